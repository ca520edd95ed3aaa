package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	if err := checkStrict(data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	return nil
}

// frame is one open object or array while checkStrict walks the tokens.
type frame struct {
	object bool
	key    bool            // object: the next token is a key
	keys   map[string]bool // object: the keys seen, case-folded
}

// checkStrict refuses what encoding/json would accept but read
// differently from another decoder: invalid UTF-8 (replaced silently),
// data after the value, and duplicate keys (the last one wins silently;
// keys equal but for case fill one struct field).
func checkStrict(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("not valid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var stack []*frame
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if tok == json.Delim('}') || tok == json.Delim(']') {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 && d.More() {
				return errors.New("data after the JSON value")
			}
			continue
		}
		if top != nil && top.object && top.key {
			k, _ := tok.(string) // Token returns only strings in key position
			fk := fold(k)
			if top.keys[fk] {
				return fmt.Errorf("key %q given twice in one object (keys are compared ignoring case): keep one", k)
			}
			top.keys[fk] = true
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // this token is a value; a key follows
		}
		if tok == json.Delim('{') || tok == json.Delim('[') {
			if len(stack) == MaxDepth {
				return fmt.Errorf("nested deeper than %d levels", MaxDepth)
			}
			f := &frame{object: tok == json.Delim('{'), key: true}
			if f.object {
				f.keys = map[string]bool{}
			}
			stack = append(stack, f)
		}
		if len(stack) == 0 && d.More() {
			return errors.New("data after the JSON value")
		}
	}
}

// fold maps a key to the form encoding/json compares it in when it
// matches struct fields (simple case folding, which also maps the Kelvin
// sign to k and the long s to s).
func fold(k string) string {
	return strings.ToLower(strings.ToUpper(k))
}
