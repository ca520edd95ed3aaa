package policy

import (
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	hostv1 "confguest/agent/api/v1" // the host's types carry the descriptors; the agent's are generated from the same file
)

// classifyType walks type t (at JSON path key) as refusedField walks
// values, and calls visit for every struct field it reaches.
func classifyType(t reflect.Type, key string, visit func(path string, r fieldRule, ok bool, ft reflect.Type)) {
	switch t.Kind() {
	case reflect.Pointer:
		classifyType(t.Elem(), key, visit)
	case reflect.Slice, reflect.Array:
		classifyType(t.Elem(), key+"[]", visit)
	case reflect.Map:
		classifyType(t.Elem(), key+"{}", visit)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := jsonName(f)
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				classifyType(f.Type, key, visit)
				continue
			}
			path := join(key, name)
			r, ok := specFields()[path]
			visit(path, r, ok, f.Type)
			if ok && r.class == object {
				classifyType(f.Type, path, visit)
			}
		}
	}
}

// TestSpecFieldsClassified fails when a field of the pinned runtime-spec's
// specs.Spec has no row in specFields (a runtime-spec upgrade added one:
// decide whether the policy pins it, the agent sets it, or it is refused),
// when a row names no field, and when a refused field has no reason.
func TestSpecFieldsClassified(t *testing.T) {
	seen := map[string]bool{}
	classifyType(reflect.TypeOf(specs.Spec{}), "", func(path string, r fieldRule, ok bool, ft reflect.Type) {
		seen[path] = true
		if !ok {
			t.Errorf("specs.Spec field %s (%s) has no row in specFields: classify it", path, ft)
			return
		}
		if r.class == refused && r.why == "" {
			t.Errorf("specFields[%q] is refused without a reason: the denial would say nothing", path)
		}
	})
	for path := range specFields() {
		if !seen[path] {
			t.Errorf("specFields[%q] names no field of specs.Spec (or one under a row that is not an object)", path)
		}
	}
	if len(seen) < 100 {
		t.Errorf("walked %d fields of specs.Spec, want the whole type (over 100)", len(seen))
	}
}

// TestRefusedFieldFindsEveryRefusedField sets each refused field of a
// spec in turn (by reflection, to a non-zero value) and checks that
// refusedField names it: the table is enforced, not only written down.
func TestRefusedFieldFindsEveryRefusedField(t *testing.T) {
	var paths []string
	classifyType(reflect.TypeOf(specs.Spec{}), "", func(path string, r fieldRule, ok bool, _ reflect.Type) {
		if r.class == refused {
			paths = append(paths, path)
		}
	})
	slices.Sort(paths)
	for _, path := range paths {
		s := &specs.Spec{Process: &specs.Process{}}
		if !setPath(reflect.ValueOf(s).Elem(), path) {
			t.Errorf("cannot set %s by reflection", path)
			continue
		}
		// Paths through lists show an index: mounts[0].x for mounts[].x.
		if got, _ := refusedField(reflect.ValueOf(s), "", "spec"); stripIndexes(got) != "spec."+path {
			t.Errorf("refusedField(spec with %s set) = %q, want %q", path, got, "spec."+path)
		}
	}
	if len(paths) < 20 {
		t.Errorf("found %d refused fields, want the table's (at least 20)", len(paths))
	}
}

// stripIndexes turns spec.mounts[0].x into spec.mounts[].x.
func stripIndexes(p string) string {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		out = append(out, p[i])
		if p[i] == '[' {
			for i+1 < len(p) && p[i+1] != ']' {
				i++
			}
		}
	}
	return string(out)
}

// setPath makes the field at JSON path p of v non-zero, allocating what
// lies on the way (one element for lists).
func setPath(v reflect.Value, p string) bool {
	for p != "" {
		name, rest, _ := cutPath(p)
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		if name == "[]" {
			if v.Kind() != reflect.Slice {
				return false
			}
			if v.Len() == 0 {
				v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
			}
			v = v.Index(0)
			p = rest
			continue
		}
		f, ok := fieldByJSON(v, name)
		if !ok {
			return false
		}
		v = f
		p = rest
	}
	return setNonZero(v)
}

func cutPath(p string) (name, rest string, ok bool) {
	if len(p) >= 2 && p[:2] == "[]" {
		rest = p[2:]
		if len(rest) > 0 && rest[0] == '.' {
			rest = rest[1:]
		}
		return "[]", rest, true
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '.':
			return p[:i], p[i+1:], true
		case '[':
			return p[:i], p[i:], true
		}
	}
	return p, "", false
}

func fieldByJSON(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if jsonName(f) == name {
			return v.Field(i), true
		}
		if jsonName(f) == "" {
			if fv, ok := fieldByJSON(v.Field(i), name); ok {
				return fv, true
			}
		}
	}
	return reflect.Value{}, false
}

func setNonZero(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		setNonZero(v.Elem())
		return true
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.Zero(v.Type().Key()), reflect.Zero(v.Type().Elem()))
		v.Set(m)
	case reflect.Struct:
		// Any struct value counts as set once one of its fields is.
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() && setNonZero(v.Field(i)) {
				return true
			}
		}
		return false
	case reflect.Interface:
		v.Set(reflect.ValueOf("x"))
	default:
		return false
	}
	return true
}

// TestRequestFieldsClassified fails when a field of CreateContainerRequest
// UpdateContainerRequest or ConfigureNetworkRequest has no row in
// createFields, updateFields or networkFields (a
// new request field: decide whether the policy pins it, a fixed rule
// checks it, or it is refused), or a row names no field.
func TestRequestFieldsClassified(t *testing.T) {
	for _, tc := range []struct {
		msg  proto.Message
		rows map[string]fieldRule
	}{
		{&hostv1.CreateContainerRequest{}, createFields},
		{&hostv1.UpdateContainerRequest{}, updateFields},
		{&hostv1.ConfigureNetworkRequest{}, networkFields},
	} {
		md := tc.msg.ProtoReflect().Descriptor()
		seen := map[string]bool{}
		var walk func(md protoreflect.MessageDescriptor, prefix string)
		walk = func(md protoreflect.MessageDescriptor, prefix string) {
			fs := md.Fields()
			for i := 0; i < fs.Len(); i++ {
				f := fs.Get(i)
				path := join(prefix, string(f.Name()))
				seen[path] = true
				r, ok := tc.rows[path]
				if !ok {
					t.Errorf("%s field %s has no row: classify it", md.Name(), path)
					continue
				}
				if r.class == object && f.Message() != nil {
					walk(f.Message(), path)
				}
			}
		}
		walk(md, "")
		for path := range tc.rows {
			if !seen[path] {
				t.Errorf("row %q names no field of %s", path, md.Name())
			}
		}
	}
}
