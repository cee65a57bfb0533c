package citadel

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/citadel-go/citadel/client"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample"
	"github.com/citadel-go/citadel/services"
	"github.com/vmihailenco/msgpack/v5"
)

// trader is a connected player and where it stands (a step on the spot
// marks its state changed, which the save barrier needs).
type trader struct {
	*client.Conn
	x, y int32
}

func newTrader(t *testing.T, srv *server, name string) *trader {
	t.Helper()
	c := player(t, srv, name, client.TCP, true)
	info := push[*services.PlayerInfo](t, c, nil)
	return &trader{Conn: c, x: info.X, y: info.Y}
}

// fails calls msg and wants an error reply with code.
func fails(t *testing.T, c *trader, msg any, code string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Call(ctx, msg)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("%T %+v: got %#v, %v; want error %s", msg, msg, r, err, code)
	}
}

// stored is a player's state as the store holds it after every change the
// player made so far: a step on the spot marks the player changed, and the
// stored record has it once it counts that step.
func stored(t *testing.T, srv *server, c *trader) sample.State {
	t.Helper()
	moved := call[*services.Moved](t, c.Conn, &services.Move{X: c.x, Y: c.y})
	deadline := time.Now().Add(15 * time.Second)
	for {
		rec, err := srv.store.Load(context.Background(), c.PlayerID())
		var st sample.State
		if err == nil {
			if err := msgpack.Unmarshal(rec.Data, &st); err != nil {
				t.Fatalf("player %d record: %v", c.PlayerID(), err)
			}
			if st.Moves >= moved.Moves {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("player %d: move %d not saved within 15s (store: %v)", c.PlayerID(), moved.Moves, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inventories checks each player's live and stored items.
func inventories(t *testing.T, srv *server, want map[*trader]map[string]int32) {
	t.Helper()
	for c, items := range want {
		if live := call[*services.Inventory](t, c.Conn, &services.GetInventory{}); !maps.Equal(live.Items, items) {
			t.Fatalf("player %d has %v, want %v", c.PlayerID(), live.Items, items)
		}
		if st := stored(t, srv, c); !maps.Equal(st.Items, items) {
			t.Fatalf("player %d stored %v, want %v", c.PlayerID(), st.Items, items)
		}
	}
}

// A trade needs both players' consent: nothing a player sends alone (an
// accept of an offer never made, of its own offer, of someone else's, with
// a forged ID or changed terms) moves an item; an accepted offer swaps
// exactly once, in one transaction.
func TestTradeNeedsConsent(t *testing.T) {
	srv := startTestServer(t, nil)
	alice, bob, carol := newTrader(t, srv, "alice"), newTrader(t, srv, "bob"), newTrader(t, srv, "carol")
	call[*services.Inventory](t, alice.Conn, &services.PickUp{Item: "sword", Count: 1})
	call[*services.Inventory](t, bob.Conn, &services.PickUp{Item: "shield", Count: 1})
	aliceItems := map[string]int32{"potion": 3, "bread": 5, "sword": 1}
	bobItems := map[string]int32{"potion": 3, "bread": 5, "shield": 1}
	carolItems := map[string]int32{"potion": 3, "bread": 5}
	unchanged := func() {
		t.Helper()
		inventories(t, srv, map[*trader]map[string]int32{alice: aliceItems, bob: bobItems, carol: carolItems})
	}

	// Alone, alice cannot get bob's shield.
	fails(t, alice, &services.TradeAccept{OfferID: 1, From: bob.PlayerID(), Give: "sword", Take: "shield"}, sample.CodeNoOffer)
	fails(t, alice, &services.TradeOffer{With: bob.PlayerID(), Give: "axe", Take: "shield"}, sample.CodeNoItem)
	fails(t, alice, &services.TradeOffer{With: alice.PlayerID(), Give: "sword", Take: "bread"}, sample.CodeBadTrade)
	fails(t, alice, &services.TradeOffer{With: bob.PlayerID(), Give: "sword", Take: "dragon"}, sample.CodeBadItem)
	fails(t, alice, &services.TradeOffer{With: bob.PlayerID(), Give: "", Take: "shield"}, sample.CodeBadItem)
	offer := call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "sword", Take: "shield"})
	seen := push[*services.TradeOffered](t, bob.Conn, nil)
	if *seen != *offer || seen.From != alice.PlayerID() || seen.To != bob.PlayerID() || seen.Give != "sword" || seen.Take != "shield" || offer.OfferID == 0 {
		t.Fatalf("alice's offer %+v reached bob as %+v", offer, seen)
	}
	// The offer is alice's: she cannot accept it herself, as from bob or
	// as from herself; carol cannot take it; bob's accept must name the
	// offer and restate its terms.
	fails(t, alice, &services.TradeAccept{OfferID: offer.OfferID, From: bob.PlayerID(), Give: "sword", Take: "shield"}, sample.CodeNoOffer)
	fails(t, alice, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "shield", Take: "sword"}, game.CodeExchange)
	call[*services.Inventory](t, carol.Conn, &services.PickUp{Item: "shield", Count: 1})
	fails(t, carol, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "shield", Take: "sword"}, sample.CodeNoOffer)
	carolItems = map[string]int32{"potion": 3, "bread": 5, "shield": 1}
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID + 1, From: alice.PlayerID(), Give: "shield", Take: "sword"}, sample.CodeNoOffer)
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: carol.PlayerID(), Give: "shield", Take: "sword"}, sample.CodeNoOffer)
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "bread", Take: "sword"}, sample.CodeTermsChanged)
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "shield", Take: "potion"}, sample.CodeTermsChanged)
	unchanged()

	// bob accepts: the items swap once, both records in one commit.
	inv := call[*services.Inventory](t, bob.Conn, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "shield", Take: "sword"})
	aliceItems = map[string]int32{"potion": 3, "bread": 5, "shield": 1}
	bobItems = map[string]int32{"potion": 3, "bread": 5, "sword": 1}
	if !maps.Equal(inv.Items, bobItems) {
		t.Fatalf("bob after the trade: %v, want %v", inv.Items, bobItems)
	}
	done := push[*services.TradeDone](t, alice.Conn, nil)
	if done.OfferID != offer.OfferID || done.With != bob.PlayerID() || !maps.Equal(done.Items, aliceItems) {
		t.Fatalf("alice was told %+v, want her items %v", done, aliceItems)
	}
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "shield", Take: "sword"}, sample.CodeNoOffer)
	unchanged()

	// A new offer to the same player replaces the open one; declined, it
	// is gone, and alice hears of it.
	old := call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "potion", Take: "bread"})
	offer = call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "potion", Take: "sword"})
	push[*services.TradeOffered](t, bob.Conn, func(m *services.TradeOffered) bool { return m.OfferID == offer.OfferID })
	fails(t, bob, &services.TradeAccept{OfferID: old.OfferID, From: alice.PlayerID(), Give: "bread", Take: "potion"}, sample.CodeNoOffer)
	closed := call[*services.TradeClosed](t, bob.Conn, &services.TradeDecline{OfferID: offer.OfferID, From: alice.PlayerID()})
	heard := push[*services.TradeClosed](t, alice.Conn, nil)
	if *heard != *closed || closed.Reason != services.TradeDeclined || closed.From != alice.PlayerID() || closed.To != bob.PlayerID() {
		t.Fatalf("decline answered %+v, alice heard %+v", closed, heard)
	}
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "sword", Take: "potion"}, sample.CodeNoOffer)
	fails(t, bob, &services.TradeDecline{OfferID: offer.OfferID, From: alice.PlayerID()}, sample.CodeNoOffer)

	// A cancelled offer is gone, and bob hears of it.
	offer = call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "potion", Take: "sword"})
	closed = call[*services.TradeClosed](t, alice.Conn, &services.TradeCancel{With: bob.PlayerID()})
	heard = push[*services.TradeClosed](t, bob.Conn, nil)
	if *heard != *closed || closed.OfferID != offer.OfferID || closed.Reason != services.TradeCancelled {
		t.Fatalf("cancel of %d answered %+v, bob heard %+v", offer.OfferID, closed, heard)
	}
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "sword", Take: "potion"}, sample.CodeNoOffer)
	fails(t, alice, &services.TradeCancel{OfferID: offer.OfferID}, sample.CodeNoOffer)

	// An item offered twice goes to the first to accept; the other offer
	// fails on the item, not by giving what is gone.
	toBob := call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "shield", Take: "bread"})
	toCarol := call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: carol.PlayerID(), Give: "shield", Take: "potion"})
	call[*services.Inventory](t, carol.Conn, &services.TradeAccept{OfferID: toCarol.OfferID, From: alice.PlayerID(), Give: "potion", Take: "shield"})
	fails(t, bob, &services.TradeAccept{OfferID: toBob.OfferID, From: alice.PlayerID(), Give: "bread", Take: "shield"}, sample.CodeNoItem)
	aliceItems = map[string]int32{"potion": 4, "bread": 5}
	carolItems = map[string]int32{"potion": 2, "bread": 5, "shield": 2}
	unchanged()
	call[*services.TradeClosed](t, alice.Conn, &services.TradeCancel{OfferID: toBob.OfferID})

	// Open offers are bounded; replacing one is not a new one.
	for i := range uint64(services.MaxTradeOffers) {
		call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: 1_000_000 + i, Give: "bread", Take: "apple"})
	}
	fails(t, alice, &services.TradeOffer{With: bob.PlayerID(), Give: "bread", Take: "apple"}, sample.CodeTooManyOffers)
	call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: 1_000_000, Give: "potion", Take: "apple"})
	call[*services.TradeClosed](t, alice.Conn, &services.TradeCancel{With: 1_000_000})
	offer = call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "bread", Take: "sword"})

	// An offer needs its maker online to be accepted.
	alice.Close()
	waitSaved(t, srv, alice.PlayerID())
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "sword", Take: "bread"}, game.CodePeerOffline)
	if st := stored(t, srv, bob); !maps.Equal(st.Items, bobItems) {
		t.Fatalf("bob stored %v, want %v", st.Items, bobItems)
	}
	rec, err := srv.store.Load(context.Background(), alice.PlayerID())
	var st sample.State
	if err != nil || msgpack.Unmarshal(rec.Data, &st) != nil || !maps.Equal(st.Items, aliceItems) {
		t.Fatalf("alice stored %v (%v), want %v", st.Items, err, aliceItems)
	}
}

// An offer not accepted in time cannot be accepted.
func TestTradeOfferExpires(t *testing.T) {
	srv := startTestServer(t, func(c *config) { c.Game = &sample.Game{TradeOfferTTL: 100 * time.Millisecond} })
	alice, bob := newTrader(t, srv, "alice"), newTrader(t, srv, "bob")
	offer := call[*services.TradeOffered](t, alice.Conn, &services.TradeOffer{With: bob.PlayerID(), Give: "potion", Take: "bread"})
	for time.Now().UnixMilli() <= offer.ExpiresAtMs {
		time.Sleep(10 * time.Millisecond)
	}
	fails(t, bob, &services.TradeAccept{OfferID: offer.OfferID, From: alice.PlayerID(), Give: "bread", Take: "potion"}, sample.CodeOfferExpired)
	start := map[string]int32{"potion": 3, "bread": 5}
	inventories(t, srv, map[*trader]map[string]int32{alice: start, bob: start})
}
