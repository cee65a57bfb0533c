// Package farm is a small game built on Citadel in a module of its own, as
// a studio builds one: players plant crops in their plots, each crop grows
// for the time its row in the crops table says (a timer on the player's
// actor), and the player harvests it for gold.
package farm

import (
	"fmt"
	"time"

	"example.com/standalone/farm/farmdata"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/game"
)

// Plots is how many plots a farm has.
const Plots = 4

// Client messages (IDs 10000 and up are the game's).
type (
	// Plant sows Crop in Plot; the reply is Planted.
	Plant struct {
		Plot int32
		Crop string
	}
	// Planted says when the crop is ready (unix milliseconds).
	Planted struct {
		Plot    int32
		Crop    string
		ReadyAt int64
	}
	// Harvest reaps a ready plot; the reply is Harvested.
	Harvest struct{ Plot int32 }
	// Harvested is the gold the crop sold for, and the farm's gold now.
	Harvested struct {
		Plot       int32
		Crop       string
		Gold, Paid int64
	}
	// GetFarm asks for the farm; the reply is Farm (also pushed on login).
	GetFarm struct{}
	// Farm is a player's farm.
	Farm struct {
		Gold  int64
		Plots []Plot
	}
	// CropReady is pushed when a crop has grown.
	CropReady struct {
		Plot int32
		Crop string
	}
)

// grown is the player's own timer message: the crop in Plot, planted at
// Planted, has grown.
type grown struct {
	Plot    int32
	Planted int64
}

// Plot is one plot of a farm: empty when Crop is "".
type Plot struct {
	Crop      string
	PlantedAt int64 // unix milliseconds
	ReadyAt   int64
}

// State is a player's saved farm.
type State struct {
	Gold  int64
	Plots []Plot
}

// Error codes.
const (
	CodeBadPlot  = "bad_plot"
	CodeBusyPlot = "plot_in_use"
	CodeNoCrop   = "no_crop"
	CodeNotReady = "not_ready"
)

// Register adds the farm's messages to reg.
func Register(reg *framework.Registry) error {
	for id, m := range map[framework.MsgID]any{
		10001: (*Plant)(nil), 10002: (*Planted)(nil), 10003: (*Harvest)(nil), 10004: (*Harvested)(nil),
		10005: (*GetFarm)(nil), 10006: (*Farm)(nil), 10007: (*CropReady)(nil), 10100: (*grown)(nil),
	} {
		if err := reg.Register(id, m); err != nil {
			return err
		}
	}
	return nil
}

// handlers are the farm's rules on the player's actor.
type handlers struct{}

// crop looks a crop up in the tables pinned for the message.
func crop(p *game.Player[State], key string) (*farmdata.Crop, bool) {
	c, ok := farmdata.Of(p.Tables()).CropByKey[key]
	return c, ok
}

func (h handlers) plot(p *game.Player[State], i int32) (*Plot, error) {
	if i < 0 || int(i) >= len(p.State.Plots) {
		return nil, framework.NewError(CodeBadPlot, fmt.Sprintf("plots are 0 to %d", len(p.State.Plots)-1))
	}
	return &p.State.Plots[i], nil
}

func (h handlers) plant(p *game.Player[State], m *Plant) (*Planted, error) {
	pl, err := h.plot(p, m.Plot)
	if err != nil {
		return nil, err
	}
	if pl.Crop != "" {
		return nil, framework.NewError(CodeBusyPlot, fmt.Sprintf("plot %d grows %s; harvest it first", m.Plot, pl.Crop))
	}
	c, ok := crop(p, m.Crop)
	if !ok {
		return nil, framework.NewError(CodeNoCrop, fmt.Sprintf("there is no crop %q", m.Crop))
	}
	now := time.Now()
	grow := time.Duration(c.GrowMS) * time.Millisecond
	*pl = Plot{Crop: m.Crop, PlantedAt: now.UnixMilli(), ReadyAt: now.Add(grow).UnixMilli()}
	p.MarkDirty()
	if _, err := p.SendAfter(grow, &grown{Plot: m.Plot, Planted: pl.PlantedAt}); err != nil {
		return nil, err
	}
	return &Planted{Plot: m.Plot, Crop: m.Crop, ReadyAt: pl.ReadyAt}, nil
}

// onGrown tells the client a crop is ready, if it is still the one planted.
func (h handlers) onGrown(p *game.Player[State], m *grown) (*game.NoReply, error) {
	pl, err := h.plot(p, m.Plot)
	if err != nil || pl.PlantedAt != m.Planted {
		return nil, nil // harvested (and maybe planted again) since
	}
	if _, attached := p.Session(); attached {
		p.Push(&CropReady{Plot: m.Plot, Crop: pl.Crop})
	}
	return nil, nil
}

func (h handlers) harvest(p *game.Player[State], m *Harvest) (*Harvested, error) {
	pl, err := h.plot(p, m.Plot)
	if err != nil {
		return nil, err
	}
	if pl.Crop == "" {
		return nil, framework.NewError(CodeNoCrop, fmt.Sprintf("plot %d is empty", m.Plot))
	}
	if left := time.Until(time.UnixMilli(pl.ReadyAt)); left > 0 {
		return nil, framework.NewError(CodeNotReady, fmt.Sprintf("%s in plot %d is ready in %v", pl.Crop, m.Plot, left.Round(time.Millisecond)))
	}
	var paid int64
	if c, ok := crop(p, pl.Crop); ok { // a crop the designers removed since sells for nothing
		paid = int64(c.Price)
	}
	p.State.Gold += paid
	out := &Harvested{Plot: m.Plot, Crop: pl.Crop, Gold: p.State.Gold, Paid: paid}
	*pl = Plot{}
	p.MarkDirty()
	return out, nil
}

func farmOf(p *game.Player[State]) *Farm { return &Farm{Gold: p.State.Gold, Plots: p.State.Plots} }

// onActivate arms the timers of crops still growing: a player's timers
// live with its actor, which starts again on every login, handoff or
// restart.
func (h handlers) onActivate(p *game.Player[State]) {
	for i, pl := range p.State.Plots {
		if pl.Crop == "" {
			continue
		}
		if _, err := p.SendAfter(max(time.Until(time.UnixMilli(pl.ReadyAt)), 0), &grown{Plot: int32(i), Planted: pl.PlantedAt}); err != nil {
			p.Logger().Error("cannot arm a crop's timer", "err", err)
		}
	}
}
