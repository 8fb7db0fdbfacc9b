package server

import (
	"crypto/rand"
	"encoding/hex"
)

// NewKey returns a new activation key: 16 random bytes as hex.
func NewKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
