// Command citadel-schema exports the client message schema (IDs, names,
// fields with their msgpack keys and types) as JSON, and generates the
// TypeScript message classes of the browser SDK (client/ts) from it.
//
// Without -in it describes Citadel's own client protocol and the sample
// game (services.RegisterClient, services.RegisterSample):
//
//	go run ./cmd/citadel-schema -out client/ts/schema.json -ts client/ts/src/messages.ts
//
// A studio exports its game's schema from its own code with
// framework.Schema(registry), then generates its TypeScript with
//
//	go run github.com/citadel-go/citadel/cmd/citadel-schema -in game-schema.json -ts src/messages.ts
//
// The generated classes import the SDK's codec from -ts-import
// (default @citadel-go/client).
package main

//go:generate go run . -out ../../client/ts/schema.json -ts ../../client/ts/src/messages.ts -ts-import ./codec.js

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/citadel-go/citadel/framework"
	"github.com/citadel-go/citadel/services"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "citadel-schema:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("citadel-schema", flag.ContinueOnError)
	in := fs.String("in", "", "read the schema from this JSON file (a studio's, from framework.Schema) instead of describing Citadel's client protocol and sample game")
	out := fs.String("out", "", "write the schema JSON here (- for stdout)")
	ts := fs.String("ts", "", "write the TypeScript message classes here")
	tsImport := fs.String("ts-import", "@citadel-go/client", "module the generated TypeScript imports the SDK's codec from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (citadel-schema -h lists the flags)", fs.Arg(0))
	}
	if *out == "" && *ts == "" {
		return errors.New("nothing to do: give -out (schema JSON) and/or -ts (TypeScript)")
	}
	var s *framework.MessageSchema
	if *in != "" {
		b, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		if s, err = parseSchema(b); err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
	} else {
		var err error
		if s, err = citadelSchema(); err != nil {
			return err
		}
	}
	if *out != "" {
		b, err := s.JSON()
		if err != nil {
			return err
		}
		if *out == "-" {
			_, err = os.Stdout.Write(b)
		} else {
			err = os.WriteFile(*out, b, 0o644)
		}
		if err != nil {
			return err
		}
	}
	if *ts != "" {
		src, err := TypeScript(s, *tsImport)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*ts, src, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// citadelSchema describes what a client of Citadel's sample server sends
// and receives: the client protocol and the sample game's messages.
func citadelSchema() (*framework.MessageSchema, error) {
	reg := framework.NewRegistry()
	if err := services.RegisterClient(reg); err != nil {
		return nil, err
	}
	if err := services.RegisterSample(reg); err != nil {
		return nil, err
	}
	s, err := framework.DescribeRegistry(reg)
	if err != nil {
		return nil, err
	}
	s.Protocol, s.MinProtocol = services.ProtocolVersion, services.MinProtocolVersion
	return s, nil
}

// parseSchema reads a schema JSON strictly: an unknown field is more
// likely a typo or another tool's file than something to ignore.
func parseSchema(b []byte) (*framework.MessageSchema, error) {
	var s framework.MessageSchema
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("not a message schema: %w", err)
	}
	if len(s.Messages) == 0 {
		return nil, errors.New("the schema has no messages")
	}
	return &s, nil
}
