package trust

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// keyFileExts are the names LoadKeyring reads from a directory.
var keyFileExts = []string{".pub", ".asc", ".gpg"}

// A Keyring holds the public keys whose signatures are trusted. The zero
// Keyring is empty, and verifies nothing.
type Keyring struct {
	entities openpgp.EntityList
	// asSigned judges a signature's times as of the moment it says it
	// was made, not by this machine's clock (AsSigned).
	asSigned bool
}

// AsSigned returns the keyring, judging each signature's times (its own,
// and its key's validity) as of the moment the signature says it was
// made instead of by this machine's clock. It is for data this machine
// verified and accepted before, such as the agent's cached bundle that
// the boot-time re-apply loads again, when the clock may since have gone
// wrong: a signature does not wear out, and what was signed by a valid
// key stays so signed. A revoked key is still refused.
func (k *Keyring) AsSigned() *Keyring {
	if k == nil {
		return nil
	}
	c := *k
	c.asSigned = true
	return &c
}

// ReadKeyring reads one or more public keys: binary, as "gpg --export" writes
// them, or ASCII-armored, as "gpg --export --armor" does, where several
// armored blocks may follow one another and text around them is ignored. It
// refuses private keys, and returns ErrNoKeys when data holds no key.
func ReadKeyring(data []byte) (*Keyring, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("read keyring: %w: no key data", ErrNoKeys)
	}
	entities, err := readEntities(data, openpgp.PublicKeyType)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	k := &Keyring{}
	for _, e := range entities {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("read keyring: key %s is a private key; a keyring takes public keys only", fingerprint(e.PrimaryKey))
		}
		k.add(e)
	}
	if k.Len() == 0 {
		return nil, fmt.Errorf("read keyring: %w: no usable key found", ErrNoKeys)
	}
	return k, nil
}

// LoadKeyring reads the keys in each path into one keyring. A path may be a
// key file, read with ReadKeyring, or a directory, whose *.pub, *.asc and
// *.gpg files are read in name order; subdirectories and other files are
// skipped. A file that does not hold keys is an error, and so is finding no
// key at all (ErrNoKeys).
func LoadKeyring(paths ...string) (*Keyring, error) {
	k := &Keyring{}
	for _, path := range paths {
		files, err := keyFiles(path)
		if err != nil {
			return nil, fmt.Errorf("load keyring: %w", err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("load keyring: %w", err)
			}
			r, err := ReadKeyring(data)
			if err != nil {
				return nil, fmt.Errorf("load keyring %s: %w", name, err)
			}
			k.Add(r)
		}
	}
	if k.Len() == 0 {
		return nil, fmt.Errorf("load keyring from %s: %w: no key files found", strings.Join(paths, ", "), ErrNoKeys)
	}
	return k, nil
}

// keyFiles returns path itself if it is a file, or the key files in it, in
// name order, if it is a directory.
func keyFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, err
	}
	var files []string
	for _, entry := range entries {
		if !hasKeyFileExt(entry.Name()) {
			continue
		}
		name := filepath.Join(path, entry.Name())
		fi, err := os.Stat(name) // follow symlinks
		if err != nil {
			return nil, err
		}
		if fi.Mode().IsRegular() {
			files = append(files, name)
		}
	}
	return files, nil
}

func hasKeyFileExt(name string) bool {
	for _, ext := range keyFileExts {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// Len returns the number of distinct keys in the keyring.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.entities)
}

// Add adds the keys of other that k does not hold yet.
func (k *Keyring) Add(other *Keyring) {
	if other == nil {
		return
	}
	for _, e := range other.entities {
		k.add(e)
	}
}

func (k *Keyring) add(e *openpgp.Entity) {
	fp := fingerprint(e.PrimaryKey)
	for _, have := range k.entities {
		if fingerprint(have.PrimaryKey) == fp {
			return
		}
	}
	k.entities = append(k.entities, e)
}

// Fingerprints returns the fingerprints of the keys in the keyring, in the
// order they were added.
func (k *Keyring) Fingerprints() []string {
	var fps []string
	for _, e := range k.entities {
		fps = append(fps, fingerprint(e.PrimaryKey))
	}
	return fps
}

// Key is one public key of a keyring.
type Key struct {
	Fingerprint string // as Fingerprints gives it
	Name        string // its primary user id, "" if none
	Armored     []byte // the public key, ASCII-armored, as gpg --export --armor writes it
}

// Keys returns the keys of the keyring, in the order they were added.
func (k *Keyring) Keys() ([]Key, error) {
	if k == nil {
		return nil, nil
	}
	var out []Key
	for _, e := range k.entities {
		b, err := armorPublic(e)
		if err != nil {
			return nil, fmt.Errorf("export public key %s: %w", fingerprint(e.PrimaryKey), err)
		}
		name := ""
		if id := e.PrimaryIdentity(); id != nil {
			name = id.Name
		}
		out = append(out, Key{Fingerprint: fingerprint(e.PrimaryKey), Name: name, Armored: b})
	}
	return out, nil
}

// readEntities parses OpenPGP keys, binary or armored in blocks of
// blockType.
func readEntities(data []byte, blockType string) (openpgp.EntityList, error) {
	if isBinary(data) {
		return openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	blocks := armorBlocks(data)
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no %s found", blockType)
	}
	var entities openpgp.EntityList
	for _, b := range blocks {
		block, err := armor.Decode(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("decode armor: %w", err)
		}
		if block.Type != blockType {
			return nil, fmt.Errorf("found %s, want %s", block.Type, blockType)
		}
		el, err := openpgp.ReadKeyRing(block.Body)
		if err != nil {
			return nil, err
		}
		entities = append(entities, el...)
	}
	return entities, nil
}

// armorBlocks splits text into its "-----BEGIN PGP ...-----" to
// "-----END PGP ...-----" blocks, dropping text between them. The armor
// decoder reads only the first block of its input, so concatenated exports
// are split first.
func armorBlocks(data []byte) [][]byte {
	var (
		blocks [][]byte
		begin  = []byte("-----BEGIN PGP ")
		end    = []byte("-----END PGP ")
		dashes = []byte("-----")
	)
	for {
		i := bytes.Index(data, begin)
		if i < 0 {
			return blocks
		}
		data = data[i:]
		j := bytes.Index(data, end)
		if j < 0 {
			// Unterminated: let the decoder report it.
			return append(blocks, data)
		}
		n := len(data)
		if k := bytes.Index(data[j+len(end):], dashes); k >= 0 {
			n = j + len(end) + k + len(dashes)
		}
		blocks = append(blocks, data[:n])
		data = data[n:]
	}
}
