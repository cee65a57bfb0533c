package game_test

import (
	"testing"
	"time"

	"github.com/citadel-go/citadel/game"
)

// WithEnv fills in what the server prepared and keeps the game's own
// fields.
func TestWithEnvFillsTheConfig(t *testing.T) {
	onAttach := func(*game.Player[counter]) {}
	cfg := game.WithEnv(game.Config[counter]{Grace: time.Hour, OnAttach: onAttach, MailboxSize: 7},
		nil, game.Env{Grace: 3 * time.Second, SaveInterval: 2 * time.Second, DrainRate: 5, RebalanceRate: -1})
	if cfg.Grace != 3*time.Second || cfg.SaveInterval != 2*time.Second || cfg.DrainRate != 5 || cfg.RebalanceRate != -1 {
		t.Errorf("the server's settings were not copied: %+v", cfg)
	}
	if cfg.OnAttach == nil || cfg.MailboxSize != 7 {
		t.Errorf("the game's own fields were lost: %+v", cfg)
	}
}
