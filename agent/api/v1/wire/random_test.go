package wire_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/wire"
	"confguest/agent/ttrpcserver"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// What the tests compare: the host's protoc-gen-go messages (agentv1), encoded by the
// protobuf runtime, against this package's, message by message.

// allMessages lists every message of agent.proto, nested ones included.
func allMessages() []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	var walk func(ms protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			out = append(out, ms.Get(i))
			walk(ms.Get(i).Messages())
		}
	}
	walk(agentv1.File_v1_agent_proto.Messages())
	return out
}

// newPB returns an empty agentv1 message of descriptor md.
func newPB(md protoreflect.MessageDescriptor) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		panic(fmt.Sprintf("agentv1 registers no %s: %v", md.FullName(), err))
	}
	return mt.New().Interface()
}

// filler fills messages with random values: every kind of field, zero values, lists of
// several elements, each oneof member or none, empty but set messages, multibyte UTF-8
// and, when unknown is set, unknown fields of every wire type at any depth.
type filler struct {
	r       *rand.Rand
	unknown bool
}

var runes = []rune{'a', 'Z', '0', ' ', '/', 'é', 'ß', '€', '中', '𝄞', '\u2028', 0}

func (f *filler) string() string {
	var b strings.Builder
	for range f.r.IntN(9) {
		b.WriteRune(runes[f.r.IntN(len(runes))])
	}
	return b.String()
}

func (f *filler) bytes() []byte {
	b := make([]byte, f.r.IntN(12))
	for i := range b {
		b[i] = byte(f.r.UintN(256))
	}
	return b
}

// varint is a random 64-bit value, often one at the edge of a type.
func (f *filler) varint() uint64 {
	edges := []uint64{0, 1, 127, 128, 16383, 16384, math.MaxInt32, 1 << 31, math.MaxUint32, 1 << 32,
		math.MaxInt64, 1 << 63, math.MaxUint64, uint64(1<<64 - 1 - 1<<31)}
	if f.r.IntN(2) == 0 {
		return edges[f.r.IntN(len(edges))]
	}
	return f.r.Uint64() >> f.r.IntN(64)
}

func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	v := f.varint()
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(f.string())
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(f.bytes())
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(v&1 == 1)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(v))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(int64(v))
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(uint32(v))
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(v)
	case protoreflect.EnumKind: // open enums: numbers without a name too
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber([]int32{0, 1, 2, 7, -3, math.MinInt32}[f.r.IntN(6)]))
	}
	panic(fmt.Sprintf("filler: kind %v", fd.Kind()))
}

// fill sets random values in m's fields; depth bounds the nesting of messages.
func (f *filler) fill(m protoreflect.Message, depth int) {
	md := m.Descriptor()
	for i := range md.Oneofs().Len() {
		od := md.Oneofs().Get(i)
		if k := f.r.IntN(od.Fields().Len() + 1); k < od.Fields().Len() {
			f.set(m, od.Fields().Get(k), depth, true)
		}
	}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if fd.ContainingOneof() == nil && f.r.IntN(4) != 0 {
			f.set(m, fd, depth, false)
		}
	}
	if f.unknown && f.r.IntN(4) == 0 {
		m.SetUnknown(f.unknownFields(md))
	}
}

// set sets field fd of m; a member of a oneof is set even to its zero value.
func (f *filler) set(m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int, oneof bool) {
	switch {
	case fd.IsList():
		l := m.Mutable(fd).List()
		for range 1 + f.r.IntN(4) {
			if fd.Kind() == protoreflect.MessageKind {
				e := l.NewElement()
				if depth > 0 && f.r.IntN(3) != 0 {
					f.fill(e.Message(), depth-1)
				}
				l.Append(e)
			} else {
				l.Append(f.scalar(fd))
			}
		}
	case fd.Kind() == protoreflect.MessageKind:
		sub := m.Mutable(fd).Message() // set, empty
		if depth > 0 && f.r.IntN(4) != 0 {
			f.fill(sub, depth-1)
		}
	default:
		v := f.scalar(fd)
		if oneof || f.r.IntN(5) != 0 {
			m.Set(fd, v)
		}
	}
}

// unknownFields is one to three fields md does not define, of every wire type, groups
// (nested) included.
func (f *filler) unknownFields(md protoreflect.MessageDescriptor) []byte {
	var b []byte
	for range 1 + f.r.IntN(3) {
		num := protowire.Number(1 + f.r.IntN(40))
		if f.r.IntN(4) == 0 {
			num = protowire.Number(f.r.Int32N(int32(protowire.MaxValidNumber))) + 1
		}
		if md.Fields().ByNumber(num) != nil {
			num += 1000
		}
		b = f.appendField(b, num, 2)
	}
	return b
}

// appendField appends a field of number num, a random wire type and a valid value.
func (f *filler) appendField(b []byte, num protowire.Number, depth int) []byte {
	switch f.r.IntN(5) {
	case 0:
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), f.varint())
	case 1:
		return protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), f.r.Uint32())
	case 2:
		return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), f.r.Uint64())
	case 3:
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), f.bytes())
	}
	b = protowire.AppendTag(b, num, protowire.StartGroupType)
	if depth > 0 {
		for range f.r.IntN(3) {
			b = f.appendField(b, protowire.Number(1+f.r.IntN(20)), depth-1)
		}
	}
	return protowire.AppendTag(b, num, protowire.EndGroupType)
}

// message returns a random agentv1 message of descriptor md.
func (f *filler) message(md protoreflect.MessageDescriptor) proto.Message {
	m := newPB(md)
	f.fill(m.ProtoReflect(), 4)
	return m
}

// referenceUnknownField is agent/request's unknownField on protoreflect, what
// UnknownField must name, except that it visits the fields in declaration order: the
// runtime's Range keeps its order deliberately unstable (internal/detrand), so
// agent/request's answer is unspecified when two messages hold unknown fields.
func referenceUnknownField(m protoreflect.Message, path string) string {
	if raw := m.GetUnknown(); len(raw) > 0 {
		where := "field"
		if path != "" {
			where = path + " field"
		}
		if num, _, n := protowire.ConsumeTag(raw); n > 0 {
			return fmt.Sprintf("%s %d", where, num)
		}
		return where + " (undecodable)"
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() != nil && !fd.IsList() && !fd.IsMap() && m.Has(fd) {
			sub := string(fd.Name())
			if path != "" {
				sub = path + "." + sub
			}
			if found := referenceUnknownField(m.Get(fd).Message(), sub); found != "" {
				return found
			}
		}
	}
	return ""
}

// wireOneofs are the oneof wrapper types of wire by name; toWire needs them, as reflection
// cannot list the types implementing an unexported interface.
var wireOneofs = map[string]reflect.Type{
	"Rootfs_Block":          reflect.TypeFor[wire.Rootfs_Block](),
	"Rootfs_GuestDirectory": reflect.TypeFor[wire.Rootfs_GuestDirectory](),
}

// toWire copies pb's exported fields into the wire message of the same name, checking
// that both have the same exported fields of the same types (up to the package). Unknown
// fields are not copied.
func toWire(pb proto.Message) (ttrpcserver.Message, error) {
	w := wire.NewMessage(string(pb.ProtoReflect().Descriptor().FullName()))
	if w == nil {
		return nil, fmt.Errorf("wire.NewMessage(%q) = nil", pb.ProtoReflect().Descriptor().FullName())
	}
	return w, copyStruct(reflect.ValueOf(w).Elem(), reflect.ValueOf(pb).Elem())
}

// typeName is t's name without its package, for comparing agentv1's types with wire's.
func typeName(t reflect.Type) string {
	return strings.NewReplacer("agentv1.", "", "wire.", "").Replace(t.String())
}

func copyStruct(dst, src reflect.Value) error {
	exported := 0
	for i := range src.NumField() {
		sf := src.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		exported++
		df, ok := dst.Type().FieldByName(sf.Name)
		if !ok || !df.IsExported() {
			return fmt.Errorf("%s has no field %s", dst.Type(), sf.Name)
		}
		if typeName(df.Type) != typeName(sf.Type) {
			return fmt.Errorf("%s.%s is a %s, want %s", dst.Type(), sf.Name, df.Type, sf.Type)
		}
		if err := copyValue(dst.FieldByIndex(df.Index), src.Field(i)); err != nil {
			return err
		}
	}
	for i := range dst.NumField() {
		if dst.Type().Field(i).IsExported() {
			exported--
		}
	}
	if exported != 0 {
		return fmt.Errorf("%s has exported fields agentv1's %s does not", dst.Type(), src.Type())
	}
	return nil
}

func copyValue(dst, src reflect.Value) error {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return nil
		}
		dst.Set(reflect.New(dst.Type().Elem()))
		return copyStruct(dst.Elem(), src.Elem())
	case reflect.Interface: // a oneof
		if src.IsNil() {
			return nil
		}
		name := src.Elem().Type().Elem().Name()
		wt, ok := wireOneofs[name]
		if !ok {
			return fmt.Errorf("no wire type for oneof wrapper %s: add it to wireOneofs", name)
		}
		w := reflect.New(wt)
		if !w.Type().Implements(dst.Type()) {
			return fmt.Errorf("%s does not implement %s", w.Type(), dst.Type())
		}
		if !src.Elem().IsNil() {
			if err := copyStruct(w.Elem(), src.Elem().Elem()); err != nil {
				return err
			}
		}
		dst.Set(w)
		return nil
	case reflect.Slice:
		if src.IsNil() {
			return nil
		}
		dst.Set(reflect.MakeSlice(dst.Type(), src.Len(), src.Len()))
		for i := range src.Len() {
			if err := copyValue(dst.Index(i), src.Index(i)); err != nil {
				return err
			}
		}
		return nil
	}
	dst.Set(src.Convert(dst.Type()))
	return nil
}
