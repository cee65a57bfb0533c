package sample

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/services"
)

// Trades are offer and accept: a player offers one of its items for one of
// another player's, and nothing moves until that player accepts the terms
// it was shown. The offer lives in the offering player's state, so the
// accepting player's Exchange, which locks the offering player and works
// on a copy of its state, checks and consumes the offer in the same store
// transaction that moves the items: an offer is used at most once, and
// never after it was cancelled, replaced or expired.

// Trade error codes.
const (
	CodeBadTrade      = "bad_trade"
	CodeNoOffer       = "no_offer"
	CodeOfferExpired  = "offer_expired"
	CodeTermsChanged  = "terms_changed"
	CodeTooManyOffers = "too_many_offers"
)

const defaultTradeOfferTTL = time.Minute

// Offer is a trade a player has offered and the other player has not
// answered yet: our Give for their Take.
type Offer struct {
	ID        uint64
	To        uint64
	Give      string
	Take      string
	ExpiresAt int64 // unix milliseconds
}

// playerGroup is a player's own broadcast group: the gates deliver to the
// player's session wherever it is, so other players' actors (on any game
// node) can push to it.
func playerGroup(id uint64) string { return fmt.Sprintf("player:%d", id) }

// offerTrade handles TradeOffer; offers stay open for ttl.
func offerTrade(ttl time.Duration) func(*Player, *services.TradeOffer) (*services.TradeOffered, error) {
	return func(p *Player, m *services.TradeOffer) (*services.TradeOffered, error) { return offer(p, m, ttl) }
}

func offer(p *Player, m *services.TradeOffer, ttl time.Duration) (*services.TradeOffered, error) {
	if m.With == 0 || m.With == p.ID {
		return nil, framework.NewError(CodeBadTrade, "offer a trade to another player")
	}
	if !validName(m.Give) || !validName(m.Take) {
		return nil, framework.NewError(CodeBadItem, "item names are 1-32 letters, digits, '_' or '-'")
	}
	s := p.State
	if s.Items[m.Give] < 1 {
		return nil, framework.NewError(CodeNoItem, fmt.Sprintf("no %q to give", m.Give))
	}
	if gamedata.Of(p.Tables()).ItemByKey[m.Take] == nil {
		return nil, framework.NewError(CodeBadItem, fmt.Sprintf("there is no item %q", m.Take))
	}
	now := time.Now()
	s.Offers = slices.DeleteFunc(s.Offers, func(o Offer) bool { return o.ExpiresAt <= now.UnixMilli() })
	replaced := slices.IndexFunc(s.Offers, func(o Offer) bool { return o.To == m.With })
	if replaced < 0 && len(s.Offers) >= services.MaxTradeOffers {
		return nil, framework.NewError(CodeTooManyOffers, fmt.Sprintf(
			"at most %d open offers: cancel one (TradeCancel) or wait until one expires", services.MaxTradeOffers))
	}
	o := Offer{ID: newOfferID(), To: m.With, Give: m.Give, Take: m.Take, ExpiresAt: now.Add(ttl).UnixMilli()}
	msg := &services.TradeOffered{OfferID: o.ID, From: p.ID, To: o.To, Give: o.Give, Take: o.Take, ExpiresAtMs: o.ExpiresAt}
	if err := p.Broadcast([]string{playerGroup(o.To)}, msg); err != nil {
		return nil, err
	}
	if replaced >= 0 {
		s.Offers[replaced] = o
	} else {
		s.Offers = append(s.Offers, o)
	}
	p.MarkDirty()
	return msg, nil
}

// newOfferID is random, so that an ID tells nothing about other offers;
// never 0, which TradeCancel reads as "the offer to With".
func newOfferID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// acceptTrade trades on an offer made to this player, if it is still open and
// its terms are the ones restated.
func acceptTrade(p *Player, m *services.TradeAccept) (*services.Inventory, error) {
	var peer *State
	err := p.Exchange(context.Background(), m.From, func(self, from *State) error {
		i, err := offerTo(from, m.From, m.OfferID, p.ID)
		if err != nil {
			return err
		}
		o := from.Offers[i]
		if time.Now().UnixMilli() >= o.ExpiresAt {
			return framework.NewError(CodeOfferExpired, fmt.Sprintf("offer %d expired; ask player %d for a new one", o.ID, m.From))
		}
		if o.Give != m.Take || o.Take != m.Give {
			return framework.NewError(CodeTermsChanged, fmt.Sprintf(
				"offer %d is your %q for their %q; accept those terms or decline", o.ID, o.Take, o.Give))
		}
		if from.Items[o.Give] < 1 {
			return framework.NewError(CodeNoItem, fmt.Sprintf("player %d no longer has %q", m.From, o.Give))
		}
		if self.Items[o.Take] < 1 {
			return framework.NewError(CodeNoItem, fmt.Sprintf("no %q to give", o.Take))
		}
		from.Offers = slices.Delete(from.Offers, i, i+1)
		moveItem(from, self, o.Give)
		moveItem(self, from, o.Take)
		peer = from
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := p.Broadcast([]string{playerGroup(m.From)}, &services.TradeDone{OfferID: m.OfferID, With: p.ID, Items: peer.Items}); err != nil {
		p.Logger().Warn("trade done; the other player was not told", "peer", m.From, "err", err)
	}
	return &services.Inventory{Items: p.State.Items}, nil
}

// declineTrade removes an offer made to this player. The offer is in the other
// player's state, so that player must be online.
func declineTrade(p *Player, m *services.TradeDecline) (*services.TradeClosed, error) {
	err := p.Exchange(context.Background(), m.From, func(_, from *State) error {
		i, err := offerTo(from, m.From, m.OfferID, p.ID)
		if err != nil {
			return err
		}
		from.Offers = slices.Delete(from.Offers, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	closed := &services.TradeClosed{OfferID: m.OfferID, From: m.From, To: p.ID, Reason: services.TradeDeclined}
	if err := p.Broadcast([]string{playerGroup(m.From)}, closed); err != nil {
		p.Logger().Warn("offer declined; the other player was not told", "peer", m.From, "err", err)
	}
	return closed, nil
}

// cancelTrade withdraws one of this player's offers.
func cancelTrade(p *Player, m *services.TradeCancel) (*services.TradeClosed, error) {
	i := slices.IndexFunc(p.State.Offers, func(o Offer) bool {
		return m.OfferID != 0 && o.ID == m.OfferID || m.OfferID == 0 && o.To == m.With
	})
	if i < 0 {
		if m.OfferID != 0 {
			return nil, framework.NewError(CodeNoOffer, fmt.Sprintf("you have no open offer %d", m.OfferID))
		}
		return nil, framework.NewError(CodeNoOffer, fmt.Sprintf("you have no open offer to player %d", m.With))
	}
	o := p.State.Offers[i]
	p.State.Offers = slices.Delete(p.State.Offers, i, i+1)
	p.MarkDirty()
	closed := &services.TradeClosed{OfferID: o.ID, From: p.ID, To: o.To, Reason: services.TradeCancelled}
	if err := p.Broadcast([]string{playerGroup(o.To)}, closed); err != nil {
		p.Logger().Warn("offer cancelled; the other player was not told", "peer", o.To, "err", err)
	}
	return closed, nil
}

// offerTo finds offer id of player from (whose state is s) made to player
// to; an offer to anyone else is as unknown as one never made.
func offerTo(s *State, from, id, to uint64) (int, error) {
	i := slices.IndexFunc(s.Offers, func(o Offer) bool { return o.ID == id && o.To == to })
	if i < 0 {
		return 0, framework.NewError(CodeNoOffer, fmt.Sprintf(
			"player %d has no open offer %d to you (cancelled, declined, replaced by a newer one, or never made)", from, id))
	}
	return i, nil
}

func moveItem(from, to *State, item string) {
	if from.Items[item]--; from.Items[item] == 0 {
		delete(from.Items, item)
	}
	if to.Items == nil {
		to.Items = make(map[string]int32)
	}
	to.Items[item]++
}
