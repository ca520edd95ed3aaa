package main

import (
	"slices"
	"strconv"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// An item is what a message holds in one place of its Go struct: a field outside any
// oneof, or a oneof (whichever member is set).
type item struct {
	field *protogen.Field // nil for a oneof
	oneof *protogen.Oneof
}

// items lists m's fields and oneofs in declaration order (a oneof where its first member
// is declared): the order of the Go struct.
func items(m *protogen.Message) []item {
	var out []item
	for _, fd := range m.Fields {
		switch {
		case fd.Oneof == nil:
			out = append(out, item{field: fd})
		case fd.Oneof.Fields[0] == fd:
			out = append(out, item{oneof: fd.Oneof})
		}
	}
	return out
}

// marshalOrder lists m's items in the order the protobuf runtime writes them: the fields
// outside oneofs by number, then the oneofs in declaration order ("to preserve
// compatibility with historic wire output", internal/impl/codec_message.go).
func marshalOrder(m *protogen.Message) []item {
	var out []item
	for _, it := range items(m) {
		if it.field != nil {
			out = append(out, it)
		}
	}
	slices.SortStableFunc(out, func(a, b item) int { return int(a.field.Desc.Number()) - int(b.field.Desc.Number()) })
	for _, o := range m.Oneofs {
		out = append(out, item{oneof: o})
	}
	return out
}

func oneofInterface(m *protogen.Message, o *protogen.Oneof) string {
	return "is" + m.GoIdent.GoName + "_" + o.GoName
}

// message writes m's struct, getters, oneof wrappers and codec methods.
func (gn *generator) message(m *protogen.Message) {
	g := gn.g
	name := m.GoIdent.GoName
	g.P(m.Comments.Leading, "type ", name, " struct {")
	for _, it := range items(m) {
		if o := it.oneof; o != nil {
			g.P(o.Comments.Leading, "// Types that are valid to be assigned to ", o.GoName, ":")
			g.P("//")
			for _, fd := range o.Fields {
				g.P("//	*", fd.GoIdent.GoName)
			}
			g.P(o.GoName, " ", oneofInterface(m, o))
			continue
		}
		fd := it.field
		typ := goType(fd)
		if fd.Desc.IsList() {
			typ = "[]" + typ
		}
		g.P(fd.Comments.Leading, fd.GoName, " ", typ, trailingComment(fd.Comments.Trailing))
	}
	g.P()
	g.P("unknownFields []byte // fields this message does not define, as they arrived")
	g.P("}")
	g.P()

	g.P("// Reset clears every field of x.")
	g.P("func (x *", name, ") Reset() { *x = ", name, "{} }")
	g.P()
	g.P("// ProtoName returns the message's full name in the .proto file.")
	g.P("func (*", name, ") ProtoName() string { return ", strconv.Quote(string(m.Desc.FullName())), " }")
	g.P()
	gn.getters(m)
	gn.oneofWrappers(m)
	gn.marshal(m)
	gn.unmarshal(m)
	gn.unknownField(m)
}

// getters writes the nil-safe GetX methods protoc-gen-go writes.
func (gn *generator) getters(m *protogen.Message) {
	g := gn.g
	name := m.GoIdent.GoName
	for _, it := range items(m) {
		if o := it.oneof; o != nil {
			g.P("func (x *", name, ") Get", o.GoName, "() ", oneofInterface(m, o), " {")
			g.P("if x != nil {")
			g.P("return x.", o.GoName)
			g.P("}")
			g.P("return nil")
			g.P("}")
			g.P()
			for _, fd := range o.Fields {
				g.P("func (x *", name, ") Get", fd.GoName, "() ", goType(fd), " {")
				g.P("if x != nil {")
				g.P("if x, ok := x.", o.GoName, ".(*", fd.GoIdent.GoName, "); ok {")
				g.P("return x.", fd.GoName)
				g.P("}")
				g.P("}")
				g.P("return ", zeroValue(fd))
				g.P("}")
				g.P()
			}
			continue
		}
		fd := it.field
		typ := goType(fd)
		if fd.Desc.IsList() {
			typ = "[]" + typ
		}
		g.P("func (x *", name, ") Get", fd.GoName, "() ", typ, " {")
		g.P("if x != nil {")
		g.P("return x.", fd.GoName)
		g.P("}")
		g.P("return ", zeroValue(fd))
		g.P("}")
		g.P()
	}
}

// oneofWrappers writes each oneof's interface and its members' wrapper structs.
func (gn *generator) oneofWrappers(m *protogen.Message) {
	g := gn.g
	for _, o := range m.Oneofs {
		iface := oneofInterface(m, o)
		g.P("type ", iface, " interface {")
		g.P(iface, "()")
		g.P("}")
		g.P()
		for _, fd := range o.Fields {
			g.P("type ", fd.GoIdent.GoName, " struct {")
			g.P(fd.Comments.Leading, fd.GoName, " ", goType(fd), trailingComment(fd.Comments.Trailing))
			g.P("}")
			g.P()
		}
		for _, fd := range o.Fields {
			g.P("func (*", fd.GoIdent.GoName, ") ", iface, "() {}")
			g.P()
		}
	}
}

// hasMessageField tells whether m encodes a message inside it (appendTo then needs err).
func hasMessageField(m *protogen.Message) bool {
	for _, fd := range m.Fields {
		if fd.Desc.Kind() == protoreflect.MessageKind {
			return true
		}
	}
	return false
}

// marshal writes Marshal and its helpers size and appendTo, which encode the fields in
// marshalOrder, leave out zero scalars outside oneofs, and append the unknown fields last:
// proto.MarshalOptions{Deterministic: true}'s output.
func (gn *generator) marshal(m *protogen.Message) {
	g := gn.g
	name := m.GoIdent.GoName
	g.P("// Marshal returns x's protobuf encoding; it fails on a string that is not valid UTF-8.")
	g.P("func (x *", name, ") Marshal() ([]byte, error) {")
	g.P("return x.appendTo(make([]byte, 0, x.size()))")
	g.P("}")
	g.P()

	g.P("func (x *", name, ") size() (n int) {")
	g.P("if x == nil {")
	g.P("return 0")
	g.P("}")
	gn.forEachEncoded(m, gn.sizeValue)
	g.P("return n + len(x.unknownFields)")
	g.P("}")
	g.P()

	g.P("func (x *", name, ") appendTo(b []byte) ([]byte, error) {")
	g.P("if x == nil {")
	g.P("return b, nil")
	g.P("}")
	if hasMessageField(m) {
		g.P("var err error")
	}
	gn.forEachEncoded(m, gn.appendValue)
	g.P("return append(b, x.unknownFields...), nil")
	g.P("}")
	g.P()
}

// forEachEncoded writes, in marshalOrder, the code that selects each value of x that is
// encoded (a set oneof member, each element of a list, a non-zero field) and, by calling
// value with its field and Go expression, the code that encodes it.
func (gn *generator) forEachEncoded(m *protogen.Message, value func(fd *protogen.Field, v string)) {
	g := gn.g
	for _, it := range marshalOrder(m) {
		if o := it.oneof; o != nil {
			g.P("switch v := x.", o.GoName, ".(type) {")
			for _, fd := range o.Fields {
				g.P("case *", fd.GoIdent.GoName, ":")
				g.P("if v != nil {")
				value(fd, "v."+fd.GoName)
				g.P("}")
			}
			g.P("}")
			continue
		}
		fd := it.field
		if fd.Desc.IsList() {
			g.P("for _, v := range x.", fd.GoName, " {")
			value(fd, "v")
			g.P("}")
			continue
		}
		g.P("if ", nonZero(fd, "x."+fd.GoName), " {")
		value(fd, "x."+fd.GoName)
		g.P("}")
	}
}

// sizeValue adds to n the encoded size of field fd holding v (a nil message is empty).
func (gn *generator) sizeValue(fd *protogen.Field, v string) {
	g := gn.g
	_, tagSize := tagBytes(fd)
	switch fd.Desc.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		g.P("n += ", tagSize, " + ", gn.wire.Ident("SizeBytes"), "(len(", v, "))")
	case protoreflect.MessageKind:
		g.P("n += ", tagSize, " + ", gn.wire.Ident("SizeBytes"), "(", v, ".size())")
	default:
		g.P("n += ", tagSize, " + ", gn.wire.Ident("SizeVarint"), "(", gn.varintOf(fd, v), ")")
	}
}

// appendValue appends to b field fd holding v, refusing a string that is not UTF-8.
func (gn *generator) appendValue(fd *protogen.Field, v string) {
	g := gn.g
	tag, _ := tagBytes(fd)
	switch fd.Desc.Kind() {
	case protoreflect.StringKind:
		g.P("if !", utf8Package.Ident("ValidString"), "(", v, ") {")
		g.P("return nil, invalidUTF8(", strconv.Quote(string(fd.Desc.FullName())), ")")
		g.P("}")
		g.P("b = append(b, ", tag, ")")
		g.P("b = ", gn.wire.Ident("AppendString"), "(b, ", v, ")")
	case protoreflect.BytesKind:
		g.P("b = append(b, ", tag, ")")
		g.P("b = ", gn.wire.Ident("AppendBytes"), "(b, ", v, ")")
	case protoreflect.MessageKind:
		g.P("b = append(b, ", tag, ")")
		g.P("b = ", gn.wire.Ident("AppendVarint"), "(b, uint64(", v, ".size()))")
		g.P("if b, err = ", v, ".appendTo(b); err != nil {")
		g.P("return nil, err")
		g.P("}")
	default:
		g.P("b = append(b, ", tag, ")")
		g.P("b = ", gn.wire.Ident("AppendVarint"), "(b, ", gn.varintOf(fd, v), ")")
	}
}

// unmarshal writes Unmarshal and unmarshal, which decode as proto.Unmarshal does: fields
// in any order, the last of a scalar winning, a message field's occurrences merged, a
// known field with another wire type kept as unknown, as are unknown fields (in order,
// their tags re-encoded minimally).
func (gn *generator) unmarshal(m *protogen.Message) {
	g := gn.g
	name := m.GoIdent.GoName
	full := strconv.Quote(string(m.Desc.FullName()))
	g.P("// Unmarshal replaces x's contents with the decoded b, as proto.Unmarshal does.")
	g.P("func (x *", name, ") Unmarshal(b []byte) error {")
	g.P("*x = ", name, "{}")
	g.P("return x.unmarshal(b, ", gn.wire.Ident("RecursionLimit"), ")")
	g.P("}")
	g.P()

	g.P("// unmarshal merges b into x; depth is how many more messages may nest.")
	g.P("func (x *", name, ") unmarshal(b []byte, depth int) error {")
	g.P("if depth--; depth < 0 {")
	g.P("return tooDeep(", full, ")")
	g.P("}")
	g.P("for len(b) > 0 {")
	g.P("num, typ, n := ", gn.wire.Ident("ConsumeTag"), "(b)")
	g.P("if n < 0 {")
	g.P("return malformed(", full, ")")
	g.P("}")
	g.P("b = b[n:]")
	g.P("n = -1 // the value's length once decoded as one of x's fields")
	if len(m.Fields) > 0 {
		g.P("switch num {")
		for _, fd := range m.Fields {
			g.P("case ", fd.Desc.Number(), ":")
			g.P("if typ != ", gn.wireTypeConst(wireType(fd)), " {")
			g.P("break")
			g.P("}")
			gn.decodeValue(m, fd, full)
		}
		g.P("}")
	}
	g.P("if n < 0 {")
	g.P("if n = ", gn.wire.Ident("ConsumeFieldValue"), "(num, typ, b); n < 0 {")
	g.P("return malformed(", full, ")")
	g.P("}")
	g.P("x.unknownFields = appendUnknown(x.unknownFields, num, typ, b[:n])")
	g.P("}")
	g.P("b = b[n:]")
	g.P("}")
	g.P("return nil")
	g.P("}")
	g.P()
}

// decodeValue decodes field fd from b into x and sets n to its length.
func (gn *generator) decodeValue(m *protogen.Message, fd *protogen.Field, full string) {
	g := gn.g
	kind := fd.Desc.Kind()
	if wireType(fd) == protowire.VarintType {
		g.P("v, l := ", gn.wire.Ident("ConsumeVarint"), "(b)")
	} else {
		g.P("v, l := ", gn.wire.Ident("ConsumeBytes"), "(b)")
	}
	g.P("if l < 0 {")
	g.P("return malformed(", full, ")")
	g.P("}")

	field := "x." + fd.GoName
	if kind == protoreflect.MessageKind {
		typ := fd.Message.GoIdent.GoName
		switch {
		case fd.Desc.IsList():
			g.P("e := &", typ, "{}")
			g.P("if err := e.unmarshal(v, depth); err != nil {")
			g.P("return err")
			g.P("}")
			g.P(field, " = append(", field, ", e)")
		case fd.Oneof != nil:
			wrapper := fd.GoIdent.GoName
			g.P("w, ok := x.", fd.Oneof.GoName, ".(*", wrapper, ")")
			g.P("if !ok || w == nil {")
			g.P("w = &", wrapper, "{}")
			g.P("}")
			g.P("if w.", fd.GoName, " == nil {")
			g.P("w.", fd.GoName, " = &", typ, "{}")
			g.P("}")
			g.P("if err := w.", fd.GoName, ".unmarshal(v, depth); err != nil {")
			g.P("return err")
			g.P("}")
			g.P("x.", fd.Oneof.GoName, " = w")
		default:
			g.P("if ", field, " == nil {")
			g.P(field, " = &", typ, "{}")
			g.P("}")
			g.P("if err := ", field, ".unmarshal(v, depth); err != nil {")
			g.P("return err")
			g.P("}")
		}
		g.P("n = l")
		return
	}

	var value string
	switch kind {
	case protoreflect.StringKind:
		g.P("if !", utf8Package.Ident("Valid"), "(v) {")
		g.P("return invalidUTF8(", strconv.Quote(string(fd.Desc.FullName())), ")")
		g.P("}")
		value = "string(v)"
	case protoreflect.BytesKind:
		// A copy, never aliasing b; empty is nil only for a field without presence.
		value = "append([]byte{}, v...)"
		if !fd.Desc.IsList() && fd.Oneof == nil {
			value = "append([]byte(nil), v...)"
		}
	default:
		value = fromVarint(fd, "v")
	}
	switch {
	case fd.Desc.IsList():
		g.P(field, " = append(", field, ", ", value, ")")
	case fd.Oneof != nil:
		g.P("x.", fd.Oneof.GoName, " = &", fd.GoIdent.GoName, "{", fd.GoName, ": ", value, "}")
	default:
		g.P(field, " = ", value)
	}
	g.P("n = l")
}

// unknownField writes UnknownField, which finds the first unknown field of x or of a
// message set in a singular field of x (recursively), in declaration order. (The protobuf
// runtime's Range, which agent/request walked, visits fields in an order it keeps
// deliberately unstable, so only a message with one unknown field has one answer there.)
func (gn *generator) unknownField(m *protogen.Message) {
	g := gn.g
	name := m.GoIdent.GoName
	g.P("// UnknownField names the first field of x, or of a message set in one of its singular")
	g.P(`// fields (recursively), that the .proto file does not define: "field 9", or with the path`)
	g.P(`// of the message's field names, "memory field 9". It returns "" if there is none.`)
	g.P("func (x *", name, ") UnknownField() string { return x.unknownField(\"\") }")
	g.P()
	g.P("func (x *", name, ") unknownField(path string) string {")
	g.P("if x == nil {")
	g.P(`return ""`)
	g.P("}")
	g.P("if len(x.unknownFields) > 0 {")
	g.P("return unknownFieldName(path, x.unknownFields)")
	g.P("}")
	for _, it := range items(m) {
		if o := it.oneof; o != nil {
			for _, fd := range o.Fields {
				if fd.Desc.Kind() != protoreflect.MessageKind {
					continue
				}
				g.P("if v, ok := x.", o.GoName, ".(*", fd.GoIdent.GoName, "); ok && v != nil {")
				g.P("if f := v.", fd.GoName, ".unknownField(subPath(path, ", strconv.Quote(string(fd.Desc.Name())), ")); f != \"\" {")
				g.P("return f")
				g.P("}")
				g.P("}")
			}
			continue
		}
		fd := it.field
		if fd.Desc.Kind() != protoreflect.MessageKind || fd.Desc.IsList() {
			continue
		}
		g.P("if f := x.", fd.GoName, ".unknownField(subPath(path, ", strconv.Quote(string(fd.Desc.Name())), ")); f != \"\" {")
		g.P("return f")
		g.P("}")
	}
	g.P(`return ""`)
	g.P("}")
	g.P()
}

// newMessage writes NewMessage, which makes an empty message by its full name.
func (gn *generator) newMessage(ms []*protogen.Message) {
	g := gn.g
	if len(ms) == 0 {
		return
	}
	g.P("// NewMessage returns an empty message of the file by its full name")
	g.P("// (", strconv.Quote(string(ms[0].Desc.FullName())), "), or nil if the file defines none of that name.")
	g.P("func NewMessage(fullName string) ", gn.server.Ident("Message"), " {")
	g.P("switch fullName {")
	for _, m := range ms {
		g.P("case ", strconv.Quote(string(m.Desc.FullName())), ":")
		g.P("return &", m.GoIdent.GoName, "{}")
	}
	g.P("}")
	g.P("return nil")
	g.P("}")
	g.P()
}
