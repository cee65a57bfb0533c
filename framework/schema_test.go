package framework

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type schemaPos struct{ X, Y int32 }

type schemaBase struct {
	Version uint32
}

type schemaMsg struct {
	schemaBase
	Name     string `msgpack:"name"`
	Secret   string `msgpack:"-"`
	Note     string `msgpack:",omitempty"`
	private  int
	Count    int
	At       time.Time
	Data     []byte
	Tags     []string
	Where    *schemaPos
	Path     []schemaPos
	Scores   map[string]int64
	ByID     map[uint32][]bool
	Anything any
}

type schemaCustom struct{ A int }

func (s *schemaCustom) EncodeMsgpack(*msgpack.Encoder) error { return nil }
func (s *schemaCustom) DecodeMsgpack(*msgpack.Decoder) error { return nil }

type schemaAnon struct{ P struct{ A int } }
type schemaChan struct{ C chan int }
type schemaArray struct {
	_msgpack struct{} `msgpack:",as_array"`
	A        int
}

func TestSchemaDescribesWhatTheCodecWrites(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(10001, (*schemaMsg)(nil))
	r.MustRegister(10000, (*schemaPos)(nil))
	s, err := DescribeRegistry(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Messages) != 2 || s.Messages[0].ID != 10000 || s.Messages[1].Name != "schemaMsg" || s.Messages[1].Go != "framework.schemaMsg" {
		t.Fatalf("messages: %+v", s.Messages)
	}
	var got []string
	for _, f := range s.Messages[1].Fields {
		got = append(got, f.Name+":"+f.Key+":"+f.Type)
		if f.OmitEmpty != (f.Name == "Note") {
			t.Errorf("%s: omitempty %v", f.Name, f.OmitEmpty)
		}
	}
	want := "Version:Version:uint32 Name:name:string Note:Note:string Count:Count:int64 At:At:time Data:Data:bytes " +
		"Tags:Tags:[]string Where:Where:*schemaPos Path:Path:[]schemaPos Scores:Scores:map[string]int64 " +
		"ByID:ByID:map[uint32][]bool Anything:Anything:any"
	if strings.Join(got, " ") != want {
		t.Errorf("fields\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(s.Structs) != 1 || s.Structs[0].Name != "schemaPos" || len(s.Structs[0].Fields) != 2 {
		t.Errorf("structs: %+v", s.Structs)
	}
	// The keys are the ones msgpack writes.
	b, _ := msgpack.Marshal(&schemaMsg{Note: "x"})
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(s.Messages[1].Fields) {
		t.Errorf("msgpack wrote %d keys, schema has %d fields", len(m), len(s.Messages[1].Fields))
	}
	for _, f := range s.Messages[1].Fields {
		if _, ok := m[f.Key]; !ok {
			t.Errorf("msgpack wrote no key %q", f.Key)
		}
	}
	js, err := Schema(r)
	if err != nil || !json.Valid(js) || !strings.HasSuffix(string(js), "}\n") {
		t.Fatalf("Schema: %v %s", err, js)
	}
}

func TestSchemaRefusesWhatItCannotDescribe(t *testing.T) {
	for proto, want := range map[any]string{
		(*schemaCustom)(nil): "custom msgpack encoding",
		(*schemaAnon)(nil):   "anonymous struct",
		(*schemaChan)(nil):   "cannot be sent",
		(*schemaArray)(nil):  "as_array",
	} {
		r := NewRegistry()
		r.MustRegister(10000, proto)
		_, err := Schema(r)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "10000") {
			t.Errorf("%T: %v, want an error naming message 10000 and saying %q", proto, err, want)
		}
	}
}
