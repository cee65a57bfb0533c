// Package sample is Citadel's sample game: players walk a shared map, chat
// with players nearby or in channels, keep a small inventory, and trade
// items with each other (offer and accept). It exercises the whole path
// (client, gate, mq, player actor, broadcast groups, store) and is what
// citadel-bot plays.
package sample

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/framework/store"
	"github.com/citadel-go/citadel/game"
	"github.com/citadel-go/citadel/game/sample/gamedata"
	"github.com/citadel-go/citadel/plugins"
	"github.com/citadel-go/citadel/plugins/examples/combat"
	"github.com/citadel-go/citadel/services"
	"github.com/citadel-go/citadel/tables"
	"github.com/prometheus/client_golang/prometheus"
)

// State is a player's saved state.
type State struct {
	Map      string
	X, Y     int32
	Moves    int64
	Items    map[string]int32 // item table keys
	Level    int32
	XP       int64
	Channels []string
	LastHunt int64   // unix milliseconds
	Offers   []Offer // trades offered to other players, not answered yet
}

// Player is a sample game player.
type Player = game.Player[State]

// Error codes of the sample game.
const (
	CodeBadMove    = "bad_move"
	CodeBadChat    = "bad_chat"
	CodeNoItem     = "no_item"
	CodeBadItem    = "bad_item"
	CodeNotInChan  = "not_in_channel"
	CodeBadChannel = "bad_channel"
	CodeNoMonster  = "no_monster"
	CodeTooSoon    = "too_soon"
	// CodeCombatUnavailable: the combat plugin failed (it is restarted).
	CodeCombatUnavailable = "combat_unavailable"
)

// Options tune the sample game service.
type Options struct {
	// Saver commits snapshots; required (see game.Config.Saver).
	Saver *game.Saver
	// Lease is the node's lease in the store; required (see
	// game.Config.Lease).
	Lease        *store.LeaseKeeper
	SaveInterval time.Duration
	Grace        time.Duration
	Metrics      prometheus.Registerer
	// Tables holds the designer tables (items, monsters, levels,
	// settings). Nil uses the tables built into the binary.
	Tables *tables.Holder[*gamedata.Set]
	// Plugins runs the combat plugin. Nil (or no "combat" loaded): the
	// v1 combat rules built into the server decide fights.
	Plugins *plugins.Host
	// TradeOfferTTL is how long a trade offer waits for an answer.
	// Default 60s.
	TradeOfferTTL time.Duration
	// DrainRate and RebalanceRate: see game.Config.
	DrainRate, RebalanceRate float64
	// WorldEventEvery is how often the world rewards the players who
	// hunted since its last event. Default 1m.
	WorldEventEvery time.Duration
}

// Register adds the client protocol and the sample game's messages to reg.
func Register(reg *framework.Registry) error {
	if err := services.RegisterClient(reg); err != nil {
		return err
	}
	return services.RegisterSample(reg)
}

// New builds the sample game service on a game node.
func New(node *framework.Node, st store.Store, opts Options) (*game.Service[State], error) {
	if err := Register(node.Registry()); err != nil {
		return nil, err
	}
	r := game.NewRouter[State](node.Registry())
	game.MustHandle(r, move)
	game.MustHandle(r, say)
	game.MustHandle(r, joinChannel)
	game.MustHandle(r, getInventory)
	game.MustHandle(r, pickUp)
	game.MustHandle(r, useItem)
	game.MustHandle(r, echo)
	if opts.TradeOfferTTL <= 0 {
		opts.TradeOfferTTL = defaultTradeOfferTTL
	}
	game.MustHandle(r, offerTrade(opts.TradeOfferTTL))
	game.MustHandle(r, acceptTrade)
	game.MustHandle(r, declineTrade)
	game.MustHandle(r, cancelTrade)
	game.MustHandle(r, hunt)
	game.MustHandle(r, itemInfo)
	if opts.Tables == nil {
		h, err := tables.NewHolder(gamedata.Schema, tables.HolderConfig{Logger: node.Logger(), Metrics: opts.Metrics})
		if err != nil {
			return nil, err
		}
		opts.Tables = h
	}
	if err := registerWorld(node.Registry()); err != nil {
		return nil, err
	}
	game.MustHandleMessage(r, onWorldBonus)
	svc, err := game.New(game.Config[State]{
		Node: node, Store: st, Lease: opts.Lease, Saver: opts.Saver, SaveInterval: opts.SaveInterval, Router: r,
		NewState: func(id uint64) *State { return newState(opts.Tables.Current(), id) },
		OnAttach: onAttach, Grace: opts.Grace, Metrics: opts.Metrics, Tables: opts.Tables, Plugins: opts.Plugins,
		DrainRate: opts.DrainRate, RebalanceRate: opts.RebalanceRate,
	})
	if err != nil {
		return nil, err
	}
	if err := startWorld(node, opts); err != nil {
		return nil, err
	}
	return svc, nil
}

// spawnGroup players (consecutive IDs) start together; groups are scattered
// over the map's cells, so a crowd of new players does not all stand in the
// same few cells (where every step would be pushed to everyone).
const spawnGroup = 8

// newState starts a player with the settings table's level and items.
func newState(t *gamedata.Set, id uint64) *State {
	cells := uint64(services.MapSize / services.NearbyRadius)
	h := (id / spawnGroup) * 2654435761 % (cells * cells) // Knuth's multiplicative hash
	cx, cy := int32(h%cells), int32(h/cells)
	slot := int32(id % spawnGroup)
	set := t.GetKeyValue_Setting()
	items := make(map[string]int32)
	for _, key := range set.StartItems {
		items[key]++
	}
	return &State{
		Map: "town",
		X:   cx*services.NearbyRadius + 10 + 3*slot, Y: cy*services.NearbyRadius + 10 + 2*slot,
		Items: items,
		Level: set.StartLevel,
	}
}

// cellGroup is the broadcast group of the map cell holding (x, y); cells
// are NearbyRadius wide, so "nearby" is the 3×3 cells around a player.
func cellGroup(m string, x, y int32) string {
	return fmt.Sprintf("map:%s:%d:%d", m, x/services.NearbyRadius, y/services.NearbyRadius)
}

func nearbyGroups(s *State) []string {
	cx, cy := s.X/services.NearbyRadius, s.Y/services.NearbyRadius
	groups := make([]string, 0, 9)
	for dx := int32(-1); dx <= 1; dx++ {
		for dy := int32(-1); dy <= 1; dy++ {
			groups = append(groups, fmt.Sprintf("map:%s:%d:%d", s.Map, cx+dx, cy+dy))
		}
	}
	return groups
}

func chatGroup(channel string) string { return "chat:" + channel }

// onAttach joins the session's groups (the player's own group carries
// pushes from other players: trade offers and answers), then pushes
// PlayerInfo. The gate handles a game node's messages in order, so a
// client that has PlayerInfo is already in its groups and misses no
// broadcast after it.
func onAttach(p *Player) {
	s := p.State
	p.JoinGroup(playerGroup(p.ID))
	p.JoinGroup(cellGroup(s.Map, s.X, s.Y))
	for _, ch := range s.Channels {
		p.JoinGroup(chatGroup(ch))
	}
	p.Push(&services.PlayerInfo{ID: p.ID, Map: s.Map, X: s.X, Y: s.Y, Items: s.Items, Level: s.Level, XP: s.XP, Moves: s.Moves})
}

func move(p *Player, m *services.Move) (*services.Moved, error) {
	s := p.State
	if abs(m.X-s.X) > services.MaxStep || abs(m.Y-s.Y) > services.MaxStep {
		return nil, framework.NewError(CodeBadMove, fmt.Sprintf("a step is at most %d per axis", services.MaxStep))
	}
	if m.X < 0 || m.Y < 0 || m.X >= services.MapSize || m.Y >= services.MapSize {
		return nil, framework.NewError(CodeBadMove, "outside the map")
	}
	oldCell, newCell := cellGroup(s.Map, s.X, s.Y), cellGroup(s.Map, m.X, m.Y)
	s.X, s.Y = m.X, m.Y
	s.Moves++
	p.MarkDirty()
	if oldCell != newCell {
		p.LeaveGroup(oldCell)
		p.JoinGroup(newCell)
	}
	p.Broadcast(nearbyGroups(s), &services.PlayerMoved{PlayerID: p.ID, X: s.X, Y: s.Y})
	return &services.Moved{X: s.X, Y: s.Y, Moves: s.Moves}, nil
}

func say(p *Player, m *services.Say) (*services.SayOK, error) {
	if m.Text == "" || len(m.Text) > services.MaxChatLength || !utf8.ValidString(m.Text) {
		return nil, framework.NewError(CodeBadChat, fmt.Sprintf("text must be 1-%d bytes of UTF-8", services.MaxChatLength))
	}
	msg := &services.ChatMessage{Channel: m.Channel, From: p.ID, Text: m.Text}
	if m.Channel == "" {
		return &services.SayOK{}, p.Broadcast(nearbyGroups(p.State), msg)
	}
	if !contains(p.State.Channels, m.Channel) {
		return nil, framework.NewError(CodeNotInChan, "join the channel first")
	}
	return &services.SayOK{}, p.Broadcast([]string{chatGroup(m.Channel)}, msg)
}

func joinChannel(p *Player, m *services.JoinChannel) (*services.Joined, error) {
	if !validName(m.Channel) {
		return nil, framework.NewError(CodeBadChannel, "channel names are 1-32 letters, digits, '_' or '-'")
	}
	if !contains(p.State.Channels, m.Channel) {
		if len(p.State.Channels) >= 10 {
			return nil, framework.NewError(CodeBadChannel, "at most 10 channels")
		}
		p.State.Channels = append(p.State.Channels, m.Channel)
		p.MarkDirty()
	}
	if err := p.JoinGroup(chatGroup(m.Channel)); err != nil {
		return nil, err
	}
	return &services.Joined{Channel: m.Channel}, nil
}

func getInventory(p *Player, _ *services.GetInventory) (*services.Inventory, error) {
	return &services.Inventory{Items: p.State.Items}, nil
}

func pickUp(p *Player, m *services.PickUp) (*services.Inventory, error) {
	if m.Count < 1 || m.Count > 100 {
		return nil, framework.NewError(CodeBadItem, "count 1-100")
	}
	item := gamedata.Of(p.Tables()).ItemByKey[m.Item]
	if item == nil {
		return nil, framework.NewError(CodeBadItem, fmt.Sprintf("there is no item %q", m.Item))
	}
	if _, ok := p.State.Items[m.Item]; !ok && len(p.State.Items) >= 50 {
		return nil, framework.NewError(CodeBadItem, "the bag holds at most 50 kinds of item")
	}
	if p.State.Items == nil {
		p.State.Items = make(map[string]int32)
	}
	p.State.Items[m.Item] = min(p.State.Items[m.Item]+m.Count, 9999)
	p.MarkDirty()
	return &services.Inventory{Items: p.State.Items}, nil
}

// useItem consumes a consumable for the experience the item table gives.
func useItem(p *Player, m *services.UseItem) (*services.ItemUsed, error) {
	n := p.State.Items[m.Item]
	if n <= 0 {
		return nil, framework.NewError(CodeNoItem, fmt.Sprintf("no %q in the bag", m.Item))
	}
	t := gamedata.Of(p.Tables())
	item := t.ItemByKey[m.Item]
	if item == nil {
		return nil, framework.NewError(CodeBadItem, fmt.Sprintf("%q is no longer in the item table", m.Item))
	}
	if item.Kind != gamedata.ItemKind_Consumable {
		return nil, framework.NewError(CodeBadItem, fmt.Sprintf("%s cannot be used (%s)", item.Name, item.Kind))
	}
	n--
	if n == 0 {
		delete(p.State.Items, m.Item)
	} else {
		p.State.Items[m.Item] = n
	}
	gainXP(t, p.State, int64(item.XP))
	p.MarkDirty()
	return &services.ItemUsed{Item: m.Item, Left: n, XP: p.State.XP, Level: p.State.Level}, nil
}

// gainXP adds experience and levels up along the level table, up to the
// settings' MaxLevel.
func gainXP(t *gamedata.Set, s *State, xp int64) {
	s.XP += xp
	maxLevel := t.GetKeyValue_Setting().MaxLevel
	for s.Level < maxLevel {
		next := t.LevelByLevel[s.Level+1]
		if next == nil || s.XP < int64(next.XP) {
			break
		}
		s.Level++
	}
}

// hunt fights a monster of the monster table. The combat plugin decides
// the fight from the monster's row and the player's stats, which the game
// passes in; the game applies the outcome to the player's state.
func hunt(p *Player, m *services.Hunt) (*services.Hunted, error) {
	t := gamedata.Of(p.Tables())
	mon := t.MonsterByID[m.Monster]
	if mon == nil {
		return nil, framework.NewError(CodeNoMonster, fmt.Sprintf("there is no monster %d", m.Monster))
	}
	now := time.Now().UnixMilli()
	if cd := int64(t.GetKeyValue_Setting().HuntCooldownMS); now-p.State.LastHunt < cd {
		return nil, framework.NewError(CodeTooSoon, fmt.Sprintf("rest %dms between hunts", cd))
	}
	req := &combat.Request{Monster: mon.ID, HP: mon.HP, Defense: mon.Defense, XP: mon.XP, Drops: mon.Drops,
		DropChance: mon.DropChance, Level: p.State.Level, Power: bestPower(t, p.State), Seed: rand.Uint64()}
	res, err := fight(p, req)
	if err != nil {
		return nil, err
	}
	p.State.LastHunt = now
	p.Context().Send(p.Context().Node().ActorAddr(worldActor), &hunted{player: p.ID})
	out := &services.Hunted{Monster: mon.ID, Blows: res.Blows, XPGain: res.XP, Rules: res.Rules}
	if p.State.Items == nil {
		p.State.Items = make(map[string]int32)
	}
	for _, id := range res.Drops {
		if item := t.ItemByID[id]; item != nil {
			p.State.Items[item.Key] = min(p.State.Items[item.Key]+1, 9999)
			out.Drops = append(out.Drops, item.Key)
		}
	}
	gainXP(t, p.State, int64(res.XP))
	p.MarkDirty()
	out.XP, out.Level = p.State.XP, p.State.Level
	return out, nil
}

// fight asks the combat plugin; without one loaded, the v1 rules built
// into the server decide.
func fight(p *Player, req *combat.Request) (*combat.Result, error) {
	if h := p.Plugins(); h != nil {
		res, err := plugins.CallMsg[combat.Result](context.Background(), h, "combat", "fight", req)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, plugins.ErrNotLoaded) {
			p.Logger().Warn("combat plugin call failed", "err", err)
			return nil, framework.NewError(CodeCombatUnavailable, "combat is unavailable; try again")
		}
	}
	res := combat.Fight(req, combat.V1)
	res.Rules += " (built in)"
	return res, nil
}

// bestPower is the power of the strongest weapon the player carries.
func bestPower(t *gamedata.Set, s *State) int32 {
	var best int32
	for key := range s.Items {
		if item := t.ItemByKey[key]; item != nil && item.Kind == gamedata.ItemKind_Weapon {
			best = max(best, item.Power)
		}
	}
	return best
}

// itemInfo answers with an item's row and the tables version it came from.
func itemInfo(p *Player, m *services.ItemInfo) (*services.ItemStats, error) {
	t := gamedata.Of(p.Tables())
	item := t.ItemByKey[m.Item]
	if item == nil {
		return nil, framework.NewError(CodeBadItem, fmt.Sprintf("there is no item %q", m.Item))
	}
	return &services.ItemStats{Item: item.Key, Name: item.Name, Price: item.Price, Power: item.Power, XP: item.XP, Version: t.Version}, nil
}

func echo(_ *Player, m *services.Echo) (*services.Echo, error) { return m, nil }

func abs(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
