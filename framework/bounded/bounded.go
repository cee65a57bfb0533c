// Package bounded decodes msgpack that comes from outside the process —
// client frames, mq bodies, plugin replies — within limits.
//
// msgpack v5.4.1 sizes what it allocates by the lengths a message claims,
// not by the bytes present: a 22-byte message claiming a 4 GiB bin, or an
// array of a billion uint32, allocates it (its slice limit never applies:
// upstream issue #401), and deep nesting recurses without a bound. So every
// message is first scanned here: each length is checked against the bytes
// left, nesting depth is capped, and the items it holds, weighed by the
// largest element the target type can allocate per item, must fit a budget
// proportional to the message's size. Only then does msgpack decode it, and
// what it allocates is then a bounded multiple of the input.
package bounded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

const (
	// MaxDepth is the deepest nesting of arrays and maps accepted.
	MaxDepth = 32
	// Expansion bounds what decoding may allocate for containers:
	// items × (largest per-item allocation of the target type) must stay
	// under Expansion × input bytes + MinBudget.
	Expansion = 32
	// MinBudget is the container allocation always allowed, so that small
	// messages with a few items of a large struct type still decode.
	MinBudget = 16 << 10
	// maxPooledInput is the largest input whose decoder goes back to the
	// pool: msgpack's decoder keeps a buffer as large as the longest string
	// it read.
	maxPooledInput = 16 << 10
)

// Errors; test with errors.Is.
var (
	// ErrMalformed: the bytes are not one well-formed msgpack value (a
	// length claims more than is left, an unused type byte, trailing bytes).
	ErrMalformed = errors.New("malformed msgpack")
	// ErrLimit: well-formed, but nested too deep or expanding too much.
	ErrLimit = errors.New("msgpack over limits")
)

// Check verifies that data is exactly one msgpack value within the limits,
// for a target whose largest per-item allocation is itemCost bytes (see
// ItemCost; 0 checks shape and depth only).
func Check(data []byte, itemCost int) error {
	n, items, err := scan(data)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("%w: %d trailing bytes after the value", ErrMalformed, len(data)-n)
	}
	if itemCost > 0 && items > 0 {
		budget := Expansion*len(data) + MinBudget
		if items > budget/itemCost {
			return fmt.Errorf("%w: %d items of up to %d bytes each would take more than %d bytes to decode (%d-byte message)",
				ErrLimit, items, itemCost, budget, len(data))
		}
	}
	return nil
}

// Unmarshal checks data (Check with v's ItemCost) and decodes it into v, a
// pointer.
func Unmarshal(data []byte, v any) error {
	return UnmarshalCost(data, v, ItemCost(reflect.TypeOf(v)))
}

// UnmarshalCost is Unmarshal with the item cost already known (callers that
// decode the same types often cache it).
func UnmarshalCost(data []byte, v any, itemCost int) error {
	if err := Check(data, itemCost); err != nil {
		return err
	}
	d := decoders.Get().(*decoder)
	d.rd.Reset(data)
	d.dec.Reset(&d.rd)
	err := d.dec.Decode(v)
	d.rd.Reset(nil) // do not keep data alive from the pool
	if len(data) <= maxPooledInput {
		decoders.Put(d)
	}
	return err
}

// decoder reads from its own bytes.Reader, so decoding allocates only the
// value (msgpack.Unmarshal allocates a reader per call).
type decoder struct {
	rd  bytes.Reader
	dec *msgpack.Decoder
}

var decoders = sync.Pool{New: func() any {
	d := &decoder{dec: msgpack.NewDecoder(nil)}
	d.dec.UsePreallocateValues(true) // as msgpack.Unmarshal does
	return d
}}

// scan walks one msgpack value at the start of b without recursion. It
// returns the value's length and the number of items (array elements and
// map entries) it holds at any depth.
func scan(b []byte) (n, items int, err error) {
	var left [MaxDepth + 1]int // items still to read at each open level
	depth, pos := 0, 0
	left[0] = 1
	for {
		if pos >= len(b) {
			return 0, 0, fmt.Errorf("%w: ends after %d bytes inside a value", ErrMalformed, len(b))
		}
		c := b[pos]
		pos++
		skip, count, isMap := 0, 0, false
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f:
			count, isMap = int(c&0x0f), true
		case c <= 0x9f:
			count = int(c & 0x0f)
		case c <= 0xbf:
			skip = int(c & 0x1f)
		default:
			var size int
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc1:
				return 0, 0, fmt.Errorf("%w: byte 0xc1 (never used) at offset %d", ErrMalformed, pos-1)
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xce, 0xd2, 0xca:
				skip = 4
			case 0xcf, 0xd3, 0xcb:
				skip = 8
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 plus the type byte
				skip = 1 + 1<<(c-0xd4)
			case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
				size = 1
			case 0xc5, 0xda, 0xc8, 0xdc, 0xde: // 16-bit lengths
				size = 2
			case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf: // 32-bit lengths
				size = 4
			}
			if size > 0 {
				if len(b)-pos < size {
					return 0, 0, fmt.Errorf("%w: length of type 0x%02x cut off at offset %d", ErrMalformed, c, pos)
				}
				var l int
				switch size {
				case 1:
					l = int(b[pos])
				case 2:
					l = int(binary.BigEndian.Uint16(b[pos:]))
				default:
					l = int(binary.BigEndian.Uint32(b[pos:]))
				}
				pos += size
				switch c {
				case 0xdc, 0xdd:
					count = l
				case 0xde, 0xdf:
					count, isMap = l, true
				case 0xc7, 0xc8, 0xc9:
					skip = l + 1 // ext: the type byte, then l bytes
				default:
					skip = l
				}
			}
		}
		if skip > len(b)-pos {
			return 0, 0, fmt.Errorf("%w: a value of type 0x%02x at offset %d claims %d bytes; %d are left",
				ErrMalformed, c, pos-1, skip, len(b)-pos)
		}
		pos += skip
		if count > 0 {
			need := count
			if isMap {
				need = 2 * count // every key and value takes at least a byte
			}
			if need > len(b)-pos {
				return 0, 0, fmt.Errorf("%w: a container at offset %d claims %d items; only %d bytes are left",
					ErrMalformed, pos-1, count, len(b)-pos)
			}
			if depth == MaxDepth {
				return 0, 0, fmt.Errorf("%w: nested deeper than %d levels", ErrLimit, MaxDepth)
			}
			items += count
			depth++
			left[depth] = need
			continue
		}
		// One value is complete; close the containers it completes.
		for {
			left[depth]--
			if left[depth] > 0 {
				break
			}
			if depth == 0 {
				return pos, items, nil
			}
			depth--
		}
	}
}

// ItemCost is the most bytes decoding into t allocates for one item of an
// array or map anywhere inside it: the largest element of its slices, and
// key, value and overhead of its maps, following pointers (a pointer element
// allocates its target) and assuming interface values decode to a boxed
// map entry. 0 for types without containers. Results are cached per type.
func ItemCost(t reflect.Type) int {
	if t == nil {
		return interfaceItemCost
	}
	if v, ok := costs.Load(t); ok {
		return v.(int)
	}
	c := itemCost(t, map[reflect.Type]bool{})
	costs.Store(t, c)
	return c
}

var costs sync.Map // reflect.Type -> int

const (
	// interfaceItemCost: an interface{} item decodes to a boxed value or a
	// map[string]interface{} entry; msgpack allocates both generously.
	interfaceItemCost = 96
	// mapEntryOverhead approximates a Go map's per-entry cost beyond key
	// and value (control bytes, load factor, growth).
	mapEntryOverhead = 16
)

// allocSize is what one value of t costs when decoding allocates it as an
// element: its size, plus the target of a pointer.
func allocSize(t reflect.Type) int {
	s := int(t.Size())
	if t.Kind() == reflect.Pointer {
		s += int(t.Elem().Size())
	}
	if t.Kind() == reflect.Interface {
		s = interfaceItemCost
	}
	return s
}

func itemCost(t reflect.Type, seen map[reflect.Type]bool) int {
	if seen[t] {
		return 0
	}
	seen[t] = true
	defer delete(seen, t)
	switch t.Kind() {
	case reflect.Pointer, reflect.Array:
		return itemCost(t.Elem(), seen)
	case reflect.Slice:
		return max(allocSize(t.Elem()), itemCost(t.Elem(), seen))
	case reflect.Map:
		entry := 2*(allocSize(t.Key())+allocSize(t.Elem())) + mapEntryOverhead
		return max(entry, itemCost(t.Key(), seen), itemCost(t.Elem(), seen))
	case reflect.Struct:
		c := 0
		for i := range t.NumField() {
			c = max(c, itemCost(t.Field(i).Type, seen))
		}
		return c
	case reflect.Interface:
		return interfaceItemCost
	}
	return 0
}
