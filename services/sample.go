package services

import "github.com/citadel-go/citadel/framework"

// The sample game's client messages (IDs 1000–1099): move on a map, chat
// to nearby players or a channel, an inventory of table items, hunting the
// table's monsters, trades, and an echo for load tests.
type (
	// PlayerInfo is pushed when a session attaches.
	PlayerInfo struct {
		ID    uint64
		Map   string
		X, Y  int32
		Items map[string]int32
		Level int32
		XP    int64
		Moves int64
	}
	// Move asks to move to X, Y (at most MaxStep per axis); reply Moved.
	Move struct{ X, Y int32 }
	// Moved is where the player is now; Moves counts every move the player
	// has made (it is saved with the state).
	Moved struct {
		X, Y  int32
		Moves int64
	}
	// PlayerMoved is pushed to nearby players.
	PlayerMoved struct {
		PlayerID uint64
		X, Y     int32
	}
	// Say sends a chat line to Channel, or to nearby players if Channel is
	// empty; reply SayOK.
	Say struct {
		Channel string
		Text    string
	}
	// SayOK acknowledges Say.
	SayOK struct{}
	// ChatMessage is pushed to the listeners of a chat line.
	ChatMessage struct {
		Channel string
		From    uint64
		Text    string
	}
	// JoinChannel subscribes to a chat channel; reply Joined.
	JoinChannel struct{ Channel string }
	// Joined acknowledges JoinChannel.
	Joined struct{ Channel string }
	// GetInventory asks for the inventory; reply Inventory.
	GetInventory struct{}
	// Inventory lists item counts.
	Inventory struct{ Items map[string]int32 }
	// PickUp adds items; reply Inventory.
	PickUp struct {
		Item  string
		Count int32
	}
	// UseItem consumes one item (a consumable: the item table says) for
	// the experience the table gives; reply ItemUsed.
	UseItem struct{ Item string }
	// ItemUsed says how many are left, and the player's experience and
	// level after it.
	ItemUsed struct {
		Item  string
		Left  int32
		XP    int64
		Level int32
	}
	// Echo is answered with itself (load tests measure the full path with it).
	Echo struct {
		Data []byte
	}
	// Hunt fights a monster of the monster table; reply Hunted.
	Hunt struct{ Monster int32 }
	// Hunted is the outcome: the experience gained, the items dropped
	// (rolled against the monster's drop chance), the level reached, and
	// the combat rules version (the combat plugin's) that decided it.
	Hunted struct {
		Monster int32
		Blows   int32
		XPGain  int32
		XP      int64
		Level   int32
		Drops   []string
		Rules   string
	}
	// ItemInfo asks for an item's row in the item table; reply ItemStats.
	ItemInfo struct{ Item string }
	// ItemStats is the row, with the tables version it was read from.
	ItemStats struct {
		Item    string
		Name    string
		Price   int32
		Power   int32
		XP      int32
		Version string
	}
	// Trade swaps one of our items for one of another online player's; both
	// inventories are saved in one transaction. Reply Inventory.
	Trade struct {
		With uint64
		Give string
		Take string
	}
)

// Sample game message IDs.
const (
	IDPlayerInfo   framework.MsgID = 1000
	IDMove         framework.MsgID = 1001
	IDMoved        framework.MsgID = 1002
	IDPlayerMoved  framework.MsgID = 1003
	IDSay          framework.MsgID = 1004
	IDSayOK        framework.MsgID = 1005
	IDChatMessage  framework.MsgID = 1006
	IDJoinChannel  framework.MsgID = 1007
	IDJoined       framework.MsgID = 1008
	IDGetInventory framework.MsgID = 1009
	IDInventory    framework.MsgID = 1010
	IDPickUp       framework.MsgID = 1011
	IDUseItem      framework.MsgID = 1012
	IDItemUsed     framework.MsgID = 1013
	IDEcho         framework.MsgID = 1014
	IDTrade        framework.MsgID = 1015
	IDHunt         framework.MsgID = 1016
	IDHunted       framework.MsgID = 1017
	IDItemInfo     framework.MsgID = 1018
	IDItemStats    framework.MsgID = 1019
)

// Sample game rules shared by client and server.
const (
	MapSize       = 1000 // coordinates are 0..MapSize-1
	MaxStep       = 10   // per axis per Move
	NearbyRadius  = 50   // chat and movement pushes reach this far
	MaxChatLength = 256
)

// RegisterSample registers the sample game's client messages.
func RegisterSample(r *framework.Registry) error {
	return registerAll(r, map[framework.MsgID]any{
		IDPlayerInfo: (*PlayerInfo)(nil), IDMove: (*Move)(nil), IDMoved: (*Moved)(nil),
		IDPlayerMoved: (*PlayerMoved)(nil), IDSay: (*Say)(nil), IDSayOK: (*SayOK)(nil),
		IDChatMessage: (*ChatMessage)(nil), IDJoinChannel: (*JoinChannel)(nil), IDJoined: (*Joined)(nil),
		IDGetInventory: (*GetInventory)(nil), IDInventory: (*Inventory)(nil), IDPickUp: (*PickUp)(nil),
		IDUseItem: (*UseItem)(nil), IDItemUsed: (*ItemUsed)(nil), IDEcho: (*Echo)(nil), IDTrade: (*Trade)(nil),
		IDHunt: (*Hunt)(nil), IDHunted: (*Hunted)(nil), IDItemInfo: (*ItemInfo)(nil), IDItemStats: (*ItemStats)(nil),
	})
}
