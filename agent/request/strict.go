package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of a request's JSON (the OCI spec itself
// nests seven levels deep).
const MaxDepth = 32

// decode unmarshals data into v after checking that it is strict JSON
// (see the package comment).
func decode(data []byte, v any) error {
	if len(data) > MaxJSONBytes {
		return fmt.Errorf("%d bytes, the limit is %d", len(data), MaxJSONBytes)
	}
	if !utf8.Valid(data) {
		return errors.New("not valid UTF-8") // encoding/json would replace it silently
	}
	if !json.Valid(data) {
		// Also refuses data after the value. Unmarshal says where.
		if err := json.Unmarshal(data, v); err != nil {
			return err
		}
		return errors.New("not a single JSON value")
	}
	if err := checkKeys(data); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// checkKeys walks valid JSON and refuses nesting deeper than MaxDepth and
// an object with two keys encoding/json would store in one place: equal
// keys (the last one wins silently) or keys equal but for case (which
// fill one struct field). Keys are compared unescaped.
func checkKeys(data []byte) error {
	var stack []map[string]bool // per open object its keys, case-folded; nil for an array
	isObject := []bool{}
	expectKey := false
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) == MaxDepth {
				return fmt.Errorf("nested deeper than %d levels", MaxDepth)
			}
			stack = append(stack, nil)
			isObject = append(isObject, c == '{')
			expectKey = c == '{'
			i++
		case '}', ']':
			stack, isObject = stack[:len(stack)-1], isObject[:len(isObject)-1]
			expectKey = false
			i++
		case ',':
			expectKey = isObject[len(isObject)-1]
			i++
		case '"':
			end := stringEnd(data, i)
			if expectKey {
				raw := data[i:end]
				key := string(raw[1 : len(raw)-1])
				if bytes.IndexByte(raw, '\\') >= 0 {
					if err := json.Unmarshal(raw, &key); err != nil {
						return err
					}
				}
				top := len(stack) - 1
				if stack[top] == nil {
					stack[top] = map[string]bool{}
				}
				fk := fold(key)
				if stack[top][fk] {
					return fmt.Errorf("key %q given twice in one object (keys are compared ignoring case): keep one", key)
				}
				stack[top][fk] = true
				expectKey = false
			}
			i = end
		default: // ':', white space, numbers, true, false, null
			i++
		}
	}
	return nil
}

// stringEnd returns the index after the JSON string starting at data[i].
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// fold maps a key to the form encoding/json compares it in when it
// matches struct fields (simple case folding, which also maps the Kelvin
// sign to k and the long s to s).
func fold(k string) string {
	return strings.ToLower(strings.ToUpper(k))
}
