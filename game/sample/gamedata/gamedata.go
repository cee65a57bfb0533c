// Package gamedata is the sample game's designer tables: items, monsters,
// the level curve and server settings.
//
// Designers edit the tabtoy sources in src/ (CSV and .xlsx);
// `go generate ./game/sample/gamedata` checks them and regenerates
// table_gen.go (tabtoy's types), load_gen.go (the Set type, the reader and
// the Schema), data/tables.json (tabtoy's JSON, for review) and
// data/tables.bin (what the server loads, built into the binary). A server
// holds them with tables.NewHolder(gamedata.Schema, ...); a handler reads
// them with gamedata.Of(p.Tables()).
package gamedata

//go:generate go run github.com/citadel-go/citadel/cmd/citadel-tables export -src src -out . -package gamedata
