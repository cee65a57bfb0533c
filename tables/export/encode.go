package export

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"

	"github.com/citadel-go/citadel/tables/rules"
)

// The data file Citadel loads at run time (tables.bin):
//
//	"CTBL" | format (1 byte) | schema hash (8, big endian) | CRC-32C of the rest (4) |
//	version (string) | rules (count, then table, field, kind, arg) |
//	each table in schema order: row count, then each row's fields in order
//
// Integers and enums are zigzag varints, unsigned integers uvarints, floats
// little-endian IEEE 754, bools one byte, strings and arrays a uvarint
// length and their contents. The version is the first 16 hex digits of the
// SHA-256 of everything after it: the same content always has the same
// version. The reader is generated for the same schema (load_gen.go); the
// schema hash keeps a file from being read by code for another shape.
const (
	magic      = "CTBL"
	formatByte = 1
)

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// encode turns tabtoy's JSON output into the data file.
func encode(sc *schema, jsonData []byte) ([]byte, string, error) {
	dec := json.NewDecoder(bytes.NewReader(jsonData))
	dec.UseNumber()
	var doc map[string]json.RawMessage
	if err := dec.Decode(&doc); err != nil {
		return nil, "", fmt.Errorf("tabtoy's JSON: %w", err)
	}
	var body encoder
	body.uvarint(uint64(len(sc.rules)))
	for _, r := range sc.rules {
		for _, s := range []string{r.Table, r.Field, string(r.Kind), r.Arg} {
			body.str(s)
		}
	}
	for _, t := range sc.order {
		var rows []map[string]any
		if raw, ok := doc[t.name]; ok {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&rows); err != nil {
				return nil, "", fmt.Errorf("tabtoy's JSON for %s: %w", t.name, err)
			}
		}
		body.uvarint(uint64(len(rows)))
		for i, row := range rows {
			for _, f := range t.fields {
				if err := sc.encodeField(&body, f, row[f.name]); err != nil {
					return nil, "", fmt.Errorf("%s row %d field %s: %w", t.name, i+1, f.name, err)
				}
			}
		}
	}
	sum := sha256.Sum256(body.b)
	version := hex.EncodeToString(sum[:8])
	var full encoder
	full.b = append(full.b, magic...)
	full.b = append(full.b, formatByte)
	full.b = binary.BigEndian.AppendUint64(full.b, sc.hash())
	rest := encoder{}
	rest.str(version)
	rest.b = append(rest.b, body.b...)
	full.b = binary.BigEndian.AppendUint32(full.b, crc32.Checksum(rest.b, crc32.MakeTable(crc32.Castagnoli)))
	full.b = append(full.b, rest.b...)
	return full.b, version, nil
}

func (sc *schema) encodeField(e *encoder, f *field, v any) error {
	if !f.array {
		return sc.encodeValue(e, f, v)
	}
	var list []any
	switch x := v.(type) {
	case nil:
	case []any:
		list = x
	default:
		return fmt.Errorf("want an array, got %T", v)
	}
	e.uvarint(uint64(len(list)))
	for _, el := range list {
		if err := sc.encodeValue(e, f, el); err != nil {
			return err
		}
	}
	return nil
}

func (sc *schema) encodeValue(e *encoder, f *field, v any) error {
	g, ok := sc.goType(f)
	if !ok {
		return fmt.Errorf("unknown type %q", f.typ)
	}
	num := func() (json.Number, error) {
		switch x := v.(type) {
		case nil:
			return "0", nil
		case json.Number:
			return x, nil
		}
		return "", fmt.Errorf("want a number, got %T", v)
	}
	switch g {
	case "string":
		s, _ := v.(string)
		if _, isStr := v.(string); !isStr && v != nil {
			return fmt.Errorf("want a string, got %T", v)
		}
		e.str(s)
	case "bool":
		b, _ := v.(bool)
		if b {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	case "float32", "float64":
		n, err := num()
		if err != nil {
			return err
		}
		x, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return err
		}
		if g == "float32" {
			e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(float32(x)))
		} else {
			e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(x))
		}
	case "uint16", "uint32", "uint64":
		n, err := num()
		if err != nil {
			return err
		}
		x, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil {
			return err
		}
		e.uvarint(x)
	default: // signed integers and enums
		n, err := num()
		if err != nil {
			return err
		}
		x, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return err
		}
		e.varint(x)
	}
	return nil
}

// rulesCheck runs the rules over the sources.
func (sc *schema) rulesCheck() []rules.Problem { return rules.Check(sc, sc.rules) }
