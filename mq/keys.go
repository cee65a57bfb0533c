package mq

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MinKeyLen is the shortest cluster key accepted (bytes): HMAC-SHA256 with
// fewer than 32 bytes of key is weaker than its output.
const MinKeyLen = 32

// Key is one cluster key: every NSQ message body is signed with HMAC-SHA256
// under a key, and carries the key's ID so receivers know which to check.
type Key struct {
	ID     uint8
	Secret []byte
}

// Keyring holds the key this process signs with and every key it accepts.
// During a rotation a cluster accepts two keys: first every process learns
// the new key (accepted, not yet signing), then every process signs with it,
// then the old key is removed.
type Keyring struct {
	sign   Key
	accept map[uint8][]byte
}

// NewKeyring returns a keyring that signs with sign and accepts sign and
// also. Keys are at least MinKeyLen bytes; IDs are unique.
func NewKeyring(sign Key, also ...Key) (*Keyring, error) {
	k := &Keyring{sign: sign, accept: make(map[uint8][]byte)}
	for _, key := range append([]Key{sign}, also...) {
		if len(key.Secret) < MinKeyLen {
			return nil, fmt.Errorf("mq: cluster key %d has %d bytes; at least %d are needed", key.ID, len(key.Secret), MinKeyLen)
		}
		if _, dup := k.accept[key.ID]; dup {
			return nil, fmt.Errorf("mq: cluster key ID %d appears twice", key.ID)
		}
		k.accept[key.ID] = append([]byte(nil), key.Secret...)
	}
	k.sign.Secret = k.accept[sign.ID]
	return k, nil
}

// ParseKeyring reads a keyring file: one key per line, "ID HEX" (ID 0–255,
// HEX at least 64 hex digits); the first key signs, the others are only
// accepted. Blank lines and lines starting with # are ignored.
func ParseKeyring(text string) (*Keyring, error) {
	var keys []Key
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("mq: cluster key line %d: want \"ID HEX\" (e.g. \"1 %s...\")", i+1, strings.Repeat("ab", 8))
		}
		id, err := strconv.ParseUint(f[0], 10, 8)
		if err != nil {
			return nil, fmt.Errorf("mq: cluster key line %d: ID %q is not a number from 0 to 255", i+1, f[0])
		}
		secret, err := hex.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("mq: cluster key line %d: the key is not hex: %w", i+1, err)
		}
		keys = append(keys, Key{ID: uint8(id), Secret: secret})
	}
	if len(keys) == 0 {
		return nil, errors.New("mq: no cluster key found (want lines \"ID HEX\"; the first one signs)")
	}
	return NewKeyring(keys[0], keys[1:]...)
}

// GenerateKeyring returns a new random key with ID 1, in ParseKeyring's
// format.
func GenerateKeyring() string {
	secret := make([]byte, MinKeyLen)
	rand.Read(secret)
	return "1 " + hex.EncodeToString(secret) + "\n"
}

// SigningKeyID is the ID of the key this keyring signs with.
func (k *Keyring) SigningKeyID() uint8 { return k.sign.ID }
