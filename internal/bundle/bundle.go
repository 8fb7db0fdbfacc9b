// Package bundle is the kcare patch bundle: NAME.kcp, a tar archive of
// manifest.json and one livepatch module, with NAME.kcp.sig beside it, a
// detached OpenPGP signature over the exact bytes of the .kcp. See
// docs/patch-format.md.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/charclass"
	"github.com/kcare/kcare/internal/failure"
	"github.com/kcare/kcare/internal/trust"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// Size limits. Every read is bounded by one of these.
const (
	MaxBundleSize    = 64 << 20
	MaxManifestSize  = 1 << 20
	MaxModuleSize    = 48 << 20
	MaxSignatureSize = 64 << 10
	MaxCheckSize     = 8 << 20
)

// ManifestFile is the name of the manifest inside a bundle.
const ManifestFile = "manifest.json"

// Manifest describes a patch level. Fields are only ever added.
type Manifest struct {
	Format           int       `json:"format"`
	Name             string    `json:"name"`
	Level            int       `json:"level"`
	Kernel           Kernel    `json:"kernel"`
	Module           Module    `json:"module"`
	CVEs             []CVE     `json:"cves"`
	EffectiveRelease string    `json:"effective_release"`
	EffectiveVersion string    `json:"effective_version,omitempty"` // package version, e.g. "6.1.195-1"
	Released         time.Time `json:"released"`
	Description      string    `json:"description,omitempty"`
	// Check, when set, names the level's check: a program (a CVE
	// reproducer, a script) that kcare-build test runs in a guest
	// booted for the purpose, after applying the level, and that must
	// exit 0. The agent never writes it out or runs it.
	Check *Check `json:"check,omitempty"`
}

// Check describes a bundle's check program, its third entry.
type Check struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Kernel is the one kernel build a bundle is for.
type Kernel struct {
	BuildID  string `json:"build_id"`  // GNU build-id of vmlinux, hex
	Release  string `json:"release"`   // uname -r
	Version  string `json:"version"`   // exact /proc/version text
	KernelID string `json:"kernel_id"` // sha1 hex of Version
}

// Module describes the livepatch module in a bundle.
type Module struct {
	File     string `json:"file"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Vermagic string `json:"vermagic"`
}

// CVE is one vulnerability a level fixes.
type CVE struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url,omitempty"`
}

// Bundle is a parsed bundle.
type Bundle struct {
	Manifest Manifest
	Module   []byte
	// Check is the check program the manifest names, if any: data for
	// kcare-build test, never run by the agent.
	Check []byte
	// Signer is set by Open: who signed the bundle.
	Signer trust.Signature
}

// Errors a caller tells apart with errors.Is.
var (
	ErrTooLarge       = failure.New(failure.Refused, "too large")
	ErrMalformed      = failure.New(failure.Refused, "malformed bundle")
	ErrDigestMismatch = failure.New(failure.Refused, "module digest mismatch")
)

var (
	hexID      = charclass.New("0-9a-f", 16, 128)
	sha1Hex    = charclass.New("0-9a-f", 40, 40)
	sha256Hex  = charclass.New("0-9a-f", 64, 64)
	moduleName = affixed{prefix: "kcare_", class: charclass.New("a-z0-9_", 1, 50)}
	fileName   = affixed{class: charclass.New("A-Za-z0-9_.-", 1, 100), suffix: ".ko"}
	cveID      = regexp.MustCompile(`^[A-Z][A-Z0-9]*-[0-9]{4}-[0-9]{1,10}$`)
	pkgVersion = charclass.New("0-9", 1, 1).Then(charclass.New("A-Za-z0-9.+~:_^-", 0, 99))
	checkName  = charclass.New("A-Za-z0-9_", 1, 1).Then(charclass.New("A-Za-z0-9_.-", 0, 99))
)

// affixed is a fixed prefix, a string of a class, a fixed suffix:
// `^kcare_[a-z0-9_]{1,50}$` without compiling a long regular expression.
type affixed struct {
	prefix string
	class  *charclass.Class
	suffix string
}

// MatchString reports whether s is the prefix, a string of the class,
// and the suffix.
func (a affixed) MatchString(s string) bool {
	rest, ok := strings.CutPrefix(s, a.prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, a.suffix)
	return ok && a.class.MatchString(rest)
}

// Validate checks every field of a manifest.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: manifest: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	switch {
	case m.Format != FormatVersion:
		return bad("format %d, this kcare reads %d", m.Format, FormatVersion)
	case m.Name == "" || len(m.Name) > 200 || strings.ContainsAny(m.Name, "\n\x00/"):
		return bad("bad name %q", m.Name)
	case m.Level < 1:
		return bad("level %d, want 1 or more", m.Level)
	case !hexID.MatchString(m.Kernel.BuildID):
		return bad("bad kernel build-id %q", m.Kernel.BuildID)
	case m.Kernel.Release == "" || strings.ContainsAny(m.Kernel.Release, " \n/"):
		return bad("bad kernel release %q", m.Kernel.Release)
	case !strings.HasPrefix(m.Kernel.Version, "Linux version "+m.Kernel.Release+" "):
		return bad("kernel version text does not name release %s", m.Kernel.Release)
	case !sha1Hex.MatchString(m.Kernel.KernelID):
		return bad("bad kernel id %q", m.Kernel.KernelID)
	case !fileName.MatchString(m.Module.File):
		return bad("bad module file name %q", m.Module.File)
	case !moduleName.MatchString(m.Module.Name):
		return bad("module name %q does not start with kcare_", m.Module.Name)
	case m.Module.Size <= 0 || m.Module.Size > MaxModuleSize:
		return bad("module size %d out of range", m.Module.Size)
	case !sha256Hex.MatchString(m.Module.SHA256):
		return bad("bad module sha256 %q", m.Module.SHA256)
	case !strings.HasPrefix(m.Module.Vermagic, m.Kernel.Release+" "):
		return bad("module vermagic %q is not for release %s", m.Module.Vermagic, m.Kernel.Release)
	case m.Released.IsZero():
		return bad("no release time")
	case m.EffectiveVersion != "" && !pkgVersion.MatchString(m.EffectiveVersion):
		return bad("bad effective version %q", m.EffectiveVersion)
	case m.Check != nil && (!checkName.MatchString(m.Check.File) || m.Check.File == m.Module.File || m.Check.File == ManifestFile):
		return bad("bad check file name %q", m.Check.File)
	case m.Check != nil && (m.Check.Size <= 0 || m.Check.Size > MaxCheckSize):
		return bad("check size %d out of range", m.Check.Size)
	case m.Check != nil && !sha256Hex.MatchString(m.Check.SHA256):
		return bad("bad check sha256 %q", m.Check.SHA256)
	}
	for _, c := range m.CVEs {
		if !cveID.MatchString(c.ID) {
			return bad("bad CVE id %q", c.ID)
		}
	}
	return nil
}

// EffectiveReleaseOr returns the effective release, or the kernel release
// when the manifest names none.
func (m *Manifest) EffectiveReleaseOr() string {
	if m.EffectiveRelease != "" {
		return m.EffectiveRelease
	}
	return m.Kernel.Release
}

// ParseManifest parses and validates manifest.json. Unknown fields are
// allowed: fields are only ever added.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("manifest: %w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxManifestSize)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Write writes a bundle of m and module to w. It fills in the module's
// size and digest, and validates the result.
func Write(w io.Writer, m Manifest, module []byte) error {
	return WriteCheck(w, m, module, "", nil)
}

// WriteCheck writes a bundle of m, module and, when check is not nil, the
// check program as its third entry, named checkFile. It fills in the
// sizes and digests, and validates the result.
func WriteCheck(w io.Writer, m Manifest, module []byte, checkFile string, check []byte) error {
	m.Format = FormatVersion
	m.Module.Size = int64(len(module))
	sum := sha256.Sum256(module)
	m.Module.SHA256 = hex.EncodeToString(sum[:])
	m.Check = nil
	if check != nil {
		sum := sha256.Sum256(check)
		m.Check = &Check{File: checkFile, Size: int64(len(check)), SHA256: hex.EncodeToString(sum[:])}
	}
	if err := m.Validate(); err != nil {
		return err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	mj = append(mj, '\n')
	tw := tar.NewWriter(w)
	type entry struct {
		name string
		data []byte
		mode int64
	}
	entries := []entry{{ManifestFile, mj, 0o644}, {m.Module.File, module, 0o644}}
	if m.Check != nil {
		entries = append(entries, entry{m.Check.File, check, 0o755})
	}
	for _, f := range entries {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Mode:     f.mode,
			Size:     int64(len(f.data)),
			ModTime:  m.Released.UTC().Truncate(time.Second),
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	return tw.Close()
}

// Open verifies sig over data with the keyring and only then parses the
// bundle. It is the only way the agent reads a bundle.
func Open(data, sig []byte, keys *trust.Keyring) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("bundle: %w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxBundleSize)
	}
	if len(sig) > MaxSignatureSize {
		return nil, fmt.Errorf("bundle signature: %w (%d bytes, limit %d)", ErrTooLarge, len(sig), MaxSignatureSize)
	}
	who, err := keys.Verify(bytes.NewReader(data), sig)
	if err != nil {
		return nil, fmt.Errorf("verify bundle: %w", err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, err
	}
	b.Signer = who
	return b, nil
}

// Parse reads a bundle's archive. Callers other than Open must have
// verified data's signature first, or be the tool that made it.
func Parse(data []byte) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("bundle: %w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxBundleSize)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var entries [3][]byte
	limits := [3]int64{MaxManifestSize, MaxModuleSize, MaxCheckSize}
	var names [3]string
	n := 0
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if i < 2 {
				return nil, fmt.Errorf("%w: %d entries, want manifest and module", ErrMalformed, i)
			}
			n = i
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if i >= 3 {
			return nil, fmt.Errorf("%w: unexpected entry %q", ErrMalformed, hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: entry %q is not a regular file", ErrMalformed, hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > limits[i] {
			return nil, fmt.Errorf("bundle entry %q: %w (%d bytes, limit %d)", hdr.Name, ErrTooLarge, hdr.Size, limits[i])
		}
		buf, err := io.ReadAll(io.LimitReader(tr, hdr.Size+1))
		if err != nil || int64(len(buf)) != hdr.Size {
			return nil, fmt.Errorf("%w: entry %q truncated", ErrMalformed, hdr.Name)
		}
		entries[i], names[i] = buf, hdr.Name
	}
	if names[0] != ManifestFile {
		return nil, fmt.Errorf("%w: first entry is %q, want %s", ErrMalformed, names[0], ManifestFile)
	}
	m, err := ParseManifest(entries[0])
	if err != nil {
		return nil, err
	}
	if m.Check == nil && n == 3 {
		return nil, fmt.Errorf("%w: unexpected entry %q", ErrMalformed, names[2])
	}
	if names[1] != m.Module.File {
		return nil, fmt.Errorf("%w: module entry %q, manifest says %q", ErrMalformed, names[1], m.Module.File)
	}
	if int64(len(entries[1])) != m.Module.Size {
		return nil, fmt.Errorf("%w: module is %d bytes, manifest says %d", ErrDigestMismatch, len(entries[1]), m.Module.Size)
	}
	sum := sha256.Sum256(entries[1])
	if got := hex.EncodeToString(sum[:]); got != m.Module.SHA256 {
		return nil, fmt.Errorf("%w: sha256 %s, manifest says %s", ErrDigestMismatch, got, m.Module.SHA256)
	}
	b := &Bundle{Manifest: *m, Module: entries[1]}
	switch {
	case m.Check != nil && n == 2:
		return nil, fmt.Errorf("%w: the manifest names check %q, the archive has no third entry", ErrMalformed, m.Check.File)
	case m.Check != nil:
		if names[2] != m.Check.File {
			return nil, fmt.Errorf("%w: check entry %q, manifest says %q", ErrMalformed, names[2], m.Check.File)
		}
		sum := sha256.Sum256(entries[2])
		if int64(len(entries[2])) != m.Check.Size || hex.EncodeToString(sum[:]) != m.Check.SHA256 {
			return nil, fmt.Errorf("%w: check %s differs from the manifest", ErrDigestMismatch, m.Check.File)
		}
		b.Check = entries[2]
	}
	return b, nil
}

// Digest returns the sha256 hex of a bundle file's bytes.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
