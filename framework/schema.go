package framework

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// MessageSchema describes the messages of a Registry as they travel on the
// wire: each message's ID, name and fields with their msgpack keys and
// types. Clients in other languages are generated from it (Citadel's
// TypeScript SDK: cmd/citadel-schema), so it says exactly what the
// Registry's msgpack codec writes: a struct is a map keyed by field name
// (or its msgpack tag), integers keep their Go width.
//
// Field types are written the Go way: bool, string, bytes ([]byte),
// int8…int64, uint8…uint64, float32, float64, time (time.Time, msgpack's
// timestamp extension), any, []T, map[K]V, *T (may be nil), or the name
// of a struct listed in Structs.
type MessageSchema struct {
	// Protocol and MinProtocol are the client protocol versions the
	// server speaks and still accepts (services.ProtocolVersion and
	// services.MinProtocolVersion for Citadel's client protocol); zero
	// when the schema is of messages only.
	Protocol    int `json:"protocol,omitempty"`
	MinProtocol int `json:"min_protocol,omitempty"`
	// Messages are ordered by ID.
	Messages []SchemaMessage `json:"messages"`
	// Structs are the struct types messages use as field types, by name.
	Structs []SchemaStruct `json:"structs,omitempty"`
}

// SchemaMessage is one registered message type.
type SchemaMessage struct {
	ID     MsgID         `json:"id"`
	Name   string        `json:"name"` // the Go type's name, e.g. Move
	Go     string        `json:"go"`   // package-qualified, e.g. services.Move
	Fields []SchemaField `json:"fields"`
}

// SchemaStruct is a struct type used inside messages.
type SchemaStruct struct {
	Name   string        `json:"name"`
	Go     string        `json:"go"`
	Fields []SchemaField `json:"fields"`
}

// SchemaField is one field as msgpack encodes it.
type SchemaField struct {
	Name string `json:"name"` // the Go field name
	Key  string `json:"key"`  // the msgpack map key
	Type string `json:"type"`
	// OmitEmpty: the key is left out when the value is empty.
	OmitEmpty bool `json:"omitempty,omitempty"`
}

// Schema returns the JSON description (MessageSchema) of every message in
// r, for generating clients in other languages. A studio exports its own
// game's schema with it, the same way cmd/citadel-schema exports Citadel's.
func Schema(r *Registry) ([]byte, error) {
	s, err := DescribeRegistry(r)
	if err != nil {
		return nil, err
	}
	return s.JSON()
}

// JSON encodes s indented, with a final newline (stable output, fit to
// commit and compare).
func (s *MessageSchema) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DescribeRegistry builds the MessageSchema of r. It fails, naming the
// message and field, on what a generated client could not encode the same
// way: custom msgpack encoders, as_array structs, anonymous struct types,
// channels and functions, two struct types with one name.
func DescribeRegistry(r *Registry) (*MessageSchema, error) {
	d := &describer{structs: map[string]*SchemaStruct{}, goNames: map[string]reflect.Type{}}
	s := &MessageSchema{Messages: []SchemaMessage{}}
	snap := r.snap.Load()
	ids := make([]MsgID, 0, len(snap.byID))
	for id := range snap.byID {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	names := map[string]MsgID{}
	for _, id := range ids {
		t := snap.byID[id].Elem()
		if prev, ok := names[t.Name()]; ok {
			return nil, fmt.Errorf("framework: schema: messages %d and %d are both named %s (generated clients name messages by their Go type name)", prev, id, t.Name())
		}
		names[t.Name()] = id
		fields, err := d.fields(t, t.String())
		if err != nil {
			return nil, fmt.Errorf("framework: schema: message %d (%v): %w", id, t, err)
		}
		s.Messages = append(s.Messages, SchemaMessage{ID: id, Name: t.Name(), Go: t.String(), Fields: fields})
	}
	for _, st := range d.structs {
		if _, clash := names[st.Name]; clash && d.goNames[st.Name].String() != st.Go {
			return nil, fmt.Errorf("framework: schema: struct %s has the name of a message of another type", st.Go)
		}
		s.Structs = append(s.Structs, *st)
	}
	sort.Slice(s.Structs, func(i, j int) bool { return s.Structs[i].Name < s.Structs[j].Name })
	return s, nil
}

type describer struct {
	structs map[string]*SchemaStruct
	goNames map[string]reflect.Type
}

var (
	customEncoderType = reflect.TypeFor[msgpack.CustomEncoder]()
	marshalerType     = reflect.TypeFor[msgpack.Marshaler]()
	binaryMarshaler   = reflect.TypeFor[encoding.BinaryMarshaler]()
	timeType          = reflect.TypeFor[time.Time]()
)

// custom reports whether msgpack encodes t by its own methods rather than
// by its fields.
func custom(t reflect.Type) bool {
	for _, it := range []reflect.Type{customEncoderType, marshalerType, binaryMarshaler} {
		if t.Implements(it) || reflect.PointerTo(t).Implements(it) {
			return true
		}
	}
	return false
}

// fields lists a struct's fields in msgpack's order, inlining embedded
// structs as msgpack does.
func (d *describer) fields(t reflect.Type, where string) ([]SchemaField, error) {
	if custom(t) {
		return nil, fmt.Errorf("%v has a custom msgpack encoding, which the schema cannot describe", t)
	}
	out := []SchemaField{}
	seen := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		if name == "-" {
			continue
		}
		if f.Name == "_msgpack" {
			if strings.Contains(opts, "as_array") || strings.Contains(opts, "asArray") {
				return nil, fmt.Errorf("%v is encoded as an array (as_array), which the schema does not describe", t)
			}
			continue
		}
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		omit := strings.Contains(","+opts+",", ",omitempty,")
		if f.Anonymous && name == "" && !strings.Contains(opts, "noinline") {
			et := f.Type
			if et.Kind() == reflect.Struct && !custom(et) && et != timeType {
				inner, err := d.fields(et, where+"."+f.Name)
				if err != nil {
					return nil, err
				}
				for _, in := range inner {
					if !seen[in.Key] {
						seen[in.Key] = true
						out = append(out, in)
					}
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		typ, err := d.typeOf(f.Type, where+"."+f.Name)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("field %s: msgpack key %q is used twice", where+"."+f.Name, name)
		}
		seen[name] = true
		out = append(out, SchemaField{Name: f.Name, Key: name, Type: typ, OmitEmpty: omit})
	}
	return out, nil
}

// typeOf names a field type in the schema's Go-like notation.
func (d *describer) typeOf(t reflect.Type, where string) (string, error) {
	if t == timeType {
		return "time", nil
	}
	if t.Kind() != reflect.Pointer && custom(t) {
		return "", fmt.Errorf("field %s: %v has a custom msgpack encoding, which the schema cannot describe", where, t)
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return t.Kind().String(), nil
	case reflect.Int:
		return "int64", nil // msgpack writes int as int64
	case reflect.Uint:
		return "uint64", nil
	case reflect.Interface:
		return "any", nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bytes", nil // msgpack bin
		}
		e, err := d.typeOf(t.Elem(), where+"[]")
		return "[]" + e, err
	case reflect.Map:
		k, err := d.typeOf(t.Key(), where+"[key]")
		if err != nil {
			return "", err
		}
		switch t.Key().Kind() {
		case reflect.String, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int,
			reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		default:
			return "", fmt.Errorf("field %s: map keys of type %v are not supported (use strings or integers)", where, t.Key())
		}
		v, err := d.typeOf(t.Elem(), where+"[value]")
		return "map[" + k + "]" + v, err
	case reflect.Pointer:
		e, err := d.typeOf(t.Elem(), where)
		return "*" + e, err
	case reflect.Struct:
		if t.Name() == "" {
			return "", fmt.Errorf("field %s: anonymous struct types are not supported; give the type a name", where)
		}
		if prev, ok := d.goNames[t.Name()]; ok {
			if prev != t {
				return "", fmt.Errorf("field %s: struct types %v and %v have the same name", where, prev, t)
			}
			return t.Name(), nil
		}
		d.goNames[t.Name()] = t
		st := &SchemaStruct{Name: t.Name(), Go: t.String()}
		d.structs[t.Name()] = st
		fields, err := d.fields(t, t.String())
		if err != nil {
			return "", fmt.Errorf("field %s: %w", where, err)
		}
		st.Fields = fields
		return t.Name(), nil
	}
	return "", fmt.Errorf("field %s: %v values cannot be sent as messages", where, t)
}
