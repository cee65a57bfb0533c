package mq

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest topic or channel name NSQ accepts.
const MaxNameLen = 64

const ephemeralSuffix = "#ephemeral"

// ValidateTopic reports whether name is a valid NSQ topic name:
// 1–64 characters from [.a-zA-Z0-9_-], optionally ending in "#ephemeral".
func ValidateTopic(name string) error {
	return validateName("topic", name)
}

// ValidateChannel reports whether name is a valid NSQ channel name; the rules
// are the same as for topics.
func ValidateChannel(name string) error {
	return validateName("channel", name)
}

// IsNameChar reports whether c may appear in an NSQ topic or channel name
// (outside the "#ephemeral" suffix). Callers that build names from parts use
// it to validate each part.
func IsNameChar(c byte) bool {
	return c == '.' || c == '_' || c == '-' ||
		(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func validateName(kind, name string) error {
	if len(name) == 0 {
		return fmt.Errorf("mq: %s name is empty (want 1-%d characters from [.a-zA-Z0-9_-])", kind, MaxNameLen)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("mq: %s name %q is %d characters long (NSQ allows at most %d)", kind, name, len(name), MaxNameLen)
	}
	base := strings.TrimSuffix(name, ephemeralSuffix)
	if base == "" {
		return fmt.Errorf("mq: %s name %q has nothing before %q", kind, name, ephemeralSuffix)
	}
	for i := 0; i < len(base); i++ {
		if !IsNameChar(base[i]) {
			return fmt.Errorf("mq: %s name %q has invalid character %q at position %d (allowed: [.a-zA-Z0-9_-] and a %q suffix)",
				kind, name, base[i], i, ephemeralSuffix)
		}
	}
	return nil
}
