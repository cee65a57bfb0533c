// Package combat is the sample game's combat rules, served by a plugin
// (v1 and v2 in the folders below) so they can be changed while players
// play. A fight is request in, result out: the game passes the monster's
// table row and the player's stats, the plugin reads no tables and keeps
// nothing.
package combat

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/citadel-go/citadel/plugins"
)

// Request is one fight.
type Request struct {
	Monster    int32
	HP         int32 // the monster's, from the monster table
	Defense    int32
	XP         int32
	Drops      []int32 // item IDs
	DropChance int32   // percent, per drop
	Level      int32   // the player's
	Power      int32   // the player's best weapon's, from the item table
	Seed       uint64  // the rolls are reproducible from it
}

// Result is the fight's outcome.
type Result struct {
	Damage int32   // per blow
	Blows  int32   // blows to win
	XP     int32   // experience won
	Drops  []int32 // item IDs dropped
	Rules  string  // the rules version that decided it
}

// Rules are one version of the combat rules.
type Rules struct {
	Version string
	// CritPercent is the chance of a critical fight (half the blows).
	CritPercent int32
	// XPBonusPercent is added to the monster's experience.
	XPBonusPercent int32
}

// V1 and V2 differ observably: V2 adds critical hits and 10% experience.
var (
	V1 = Rules{Version: "v1"}
	V2 = Rules{Version: "v2", CritPercent: 20, XPBonusPercent: 10}
)

// Fight decides a fight under rules r.
func Fight(req *Request, r Rules) *Result {
	rng := rand.New(rand.NewPCG(req.Seed, uint64(req.Monster)))
	dmg := max(1, 5+2*req.Level+req.Power-req.Defense)
	blows := max(1, (req.HP+dmg-1)/dmg)
	if r.CritPercent > 0 && rng.Int32N(100) < r.CritPercent {
		blows = max(1, blows/2)
	}
	res := &Result{Damage: dmg, Blows: blows, XP: req.XP + req.XP*r.XPBonusPercent/100, Rules: r.Version}
	for _, id := range req.Drops {
		if rng.Int32N(100) < req.DropChance {
			res.Drops = append(res.Drops, id)
		}
	}
	return res
}

// Plugin is the combat plugin under rules r: one method, "fight".
func Plugin(r Rules, buildVersion string) plugins.Plugin {
	return plugins.Plugin{
		Name:    "combat",
		Version: buildVersion,
		Handlers: map[string]plugins.Handler{
			"fight": plugins.Handle(func(_ context.Context, req *Request) (*Result, error) {
				if req.HP <= 0 {
					return nil, errors.New("a monster needs HP")
				}
				return Fight(req, r), nil
			}),
		},
		Canary: func(context.Context) error {
			res := Fight(&Request{Monster: 1, HP: 50, Defense: 2, XP: 10, Level: 3, Power: 4, Seed: 1}, r)
			if res.Damage <= 0 || res.Blows <= 0 || res.XP < 10 || res.Rules != r.Version {
				return errors.New("combat rules give a nonsensical fight")
			}
			return nil
		},
	}
}
