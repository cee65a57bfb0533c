package wire_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/bounded"
	"github.com/citadel-go/citadel/framework/wire"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
)

// fuzzRegistry holds every message a Citadel node decodes from outside:
// the client protocol and the sample game's messages (what a gate accepts
// from clients), and the services' internal contracts (what nodes accept
// from the mq).
func fuzzRegistry(t testing.TB) (*framework.Registry, []framework.RegisteredType) {
	reg := framework.NewRegistry()
	for _, register := range []func(*framework.Registry) error{
		sample.Register, services.RegisterInternal, services.RegisterPlugins, services.RegisterTables,
	} {
		if err := register(reg); err != nil {
			t.Fatal(err)
		}
	}
	return reg, reg.Types()
}

// allocBudget is the most decoding a payload of n bytes may allocate:
// bounded's container budget, the strings and bins it holds (at most n),
// and the message itself with some slack.
func allocBudget(n int) uint64 {
	return uint64((bounded.Expansion+2)*n + 2*bounded.MinBudget + 8<<10)
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzDecode decodes arbitrary payloads as every registered message type
// and checks that decoding never panics and allocates within the budget.
// The seeds (testdata/fuzz/FuzzDecode) are a valid message of every type
// and payloads whose lengths claim far more than they hold; CI runs them
// with the tests. Run it for real with
//
//	go test -run '^$' -fuzz FuzzDecode ./framework/wire/
func FuzzDecode(f *testing.F) {
	reg, types := fuzzRegistry(f)
	for _, rt := range types {
		msg, err := reg.New(rt.ID)
		if err != nil {
			f.Fatal(err)
		}
		_, payload, err := wire.Encode(reg, 1, msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(rt.ID), payload)
	}
	f.Fuzz(func(t *testing.T, id uint16, payload []byte) {
		mid := framework.MsgID(id)
		if reg.Name(mid) == "" { // unknown IDs are refused; fuzz a known type instead
			if _, _, _, err := wire.Decode(reg, mid, payload); !errors.Is(err, framework.ErrUnregistered) && !errors.Is(err, wire.ErrBadHeader) {
				t.Fatalf("unknown ID %d: %v", id, err)
			}
			mid = types[int(id)%len(types)].ID
		}
		wire.Decode(reg, mid, payload) // warms msgpack's per-type caches
		var err error
		n := allocatedBy(func() { _, _, _, err = wire.Decode(reg, mid, payload) })
		if budget := allocBudget(len(payload)); n > budget {
			t.Fatalf("decoding %d bytes as %s allocated %d bytes (budget %d; err %v)", len(payload), reg.Name(mid), n, budget, err)
		}
	})
}
