// Package farmdata is the farm's designer tables: the crops, with how long
// each grows and what it sells for.
//
// Designers edit src/ (CSV or .xlsx, tabtoy's format); `go generate
// ./farm/farmdata` checks them with citadel-tables and regenerates the
// typed Go code and the data built into the server.
package farmdata

//go:generate go run github.com/citadel-go/citadel/cmd/citadel-tables export -src src -out . -package farmdata
