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
	// TradeOffer offers one of our items for one of another player's:
	// "I give Give for your Take". Nothing moves until that player
	// accepts (TradeAccept). A new offer to the same player replaces the
	// open one. The other player is pushed TradeOffered; reply
	// TradeOffered.
	TradeOffer struct {
		With uint64
		Give string
		Take string
	}
	// TradeOffered is an open offer: From gives Give for To's Take, until
	// ExpiresAtMs (unix milliseconds). It answers TradeOffer and is pushed
	// to To, who answers it with TradeAccept or TradeDecline.
	TradeOffered struct {
		OfferID     uint64
		From, To    uint64
		Give, Take  string
		ExpiresAtMs int64
	}
	// TradeAccept accepts From's offer, restating its terms from the
	// accepting side (Give is the offer's Take, Take its Give), so the
	// trade happens only on the terms the player saw. Both players must be
	// online; both inventories are saved in one transaction. Reply
	// Inventory; From is pushed TradeDone.
	TradeAccept struct {
		OfferID uint64
		From    uint64
		Give    string
		Take    string
	}
	// TradeDone is pushed to the player whose offer was accepted, with its
	// inventory after the trade.
	TradeDone struct {
		OfferID uint64
		With    uint64
		Items   map[string]int32
	}
	// TradeDecline refuses From's offer; reply TradeClosed, also pushed to
	// From. Both players must be online.
	TradeDecline struct {
		OfferID uint64
		From    uint64
	}
	// TradeCancel withdraws our offer OfferID, or (OfferID 0) our offer to
	// With; reply TradeClosed, also pushed to the other player.
	TradeCancel struct {
		OfferID uint64
		With    uint64
	}
	// TradeClosed says an offer from From to To is gone without a trade;
	// Reason is TradeDeclined or TradeCancelled.
	TradeClosed struct {
		OfferID  uint64
		From, To uint64
		Reason   string
	}
	// WorldBonus is pushed to a player the world rewarded: a world event
	// (Event) gave XPGain experience to every player who hunted since
	// the last one; XP and Level are the player's after it.
	WorldBonus struct {
		Event  string
		XPGain int64
		XP     int64
		Level  int32
	}
)

// TradeClosed reasons.
const (
	TradeDeclined  = "declined"
	TradeCancelled = "cancelled"
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
	// 1015 was Trade, which took another player's item without consent;
	// it is retired, never to be reused.
	IDHunt         framework.MsgID = 1016
	IDHunted       framework.MsgID = 1017
	IDItemInfo     framework.MsgID = 1018
	IDItemStats    framework.MsgID = 1019
	IDTradeOffer   framework.MsgID = 1020
	IDTradeOffered framework.MsgID = 1021
	IDTradeAccept  framework.MsgID = 1022
	IDTradeDone    framework.MsgID = 1023
	IDTradeDecline framework.MsgID = 1024
	IDTradeCancel  framework.MsgID = 1025
	IDTradeClosed  framework.MsgID = 1026
	IDWorldBonus   framework.MsgID = 1027
)

// Sample game rules shared by client and server.
const (
	MapSize       = 1000 // coordinates are 0..MapSize-1
	MaxStep       = 10   // per axis per Move
	NearbyRadius  = 50   // chat and movement pushes reach this far
	MaxChatLength = 256
	// MaxTradeOffers is how many offers a player may have open at once.
	MaxTradeOffers = 8
)

// RegisterSample registers the sample game's client messages.
func RegisterSample(r *framework.Registry) error {
	return registerAll(r, map[framework.MsgID]any{
		IDPlayerInfo: (*PlayerInfo)(nil), IDMove: (*Move)(nil), IDMoved: (*Moved)(nil),
		IDPlayerMoved: (*PlayerMoved)(nil), IDSay: (*Say)(nil), IDSayOK: (*SayOK)(nil),
		IDChatMessage: (*ChatMessage)(nil), IDJoinChannel: (*JoinChannel)(nil), IDJoined: (*Joined)(nil),
		IDGetInventory: (*GetInventory)(nil), IDInventory: (*Inventory)(nil), IDPickUp: (*PickUp)(nil),
		IDUseItem: (*UseItem)(nil), IDItemUsed: (*ItemUsed)(nil), IDEcho: (*Echo)(nil),
		IDHunt: (*Hunt)(nil), IDHunted: (*Hunted)(nil), IDItemInfo: (*ItemInfo)(nil), IDItemStats: (*ItemStats)(nil),
		IDTradeOffer: (*TradeOffer)(nil), IDTradeOffered: (*TradeOffered)(nil), IDTradeAccept: (*TradeAccept)(nil),
		IDTradeDone: (*TradeDone)(nil), IDTradeDecline: (*TradeDecline)(nil), IDTradeCancel: (*TradeCancel)(nil),
		IDTradeClosed: (*TradeClosed)(nil), IDWorldBonus: (*WorldBonus)(nil),
	})
}
