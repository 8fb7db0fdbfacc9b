package debian

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source is one "deb" entry of an apt sources file.
type Source struct {
	URI        string
	Suites     []string
	Components []string
	// SignedBy is the entry's Signed-By value as written: a keyring path,
	// or a key block whose lines after the first start with a space.
	SignedBy string
}

// Mirrors are the host's Debian archives: the main archive and the
// security archive, each with the keyring its entry names.
type Mirrors struct {
	Archive  Source // URI and SignedBy only
	Security Source // URI and SignedBy only; zero when the host has none
}

// ErrNoMirror means the host's apt sources name no Debian archive.
var ErrNoMirror = errors.New("no Debian archive in the host's apt sources")

// codenames are the Debian releases whose suites name a Debian archive.
var codenames = []string{"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
	"oldoldstable", "oldstable", "stable", "testing", "unstable"}

// suiteRelease returns the release a suite belongs to and whether it is a
// security suite: "bookworm-security" is bookworm's, "trixie-backports"
// trixie's.
func suiteRelease(suite string) (release string, security bool) {
	if base, ok := strings.CutSuffix(suite, "/updates"); ok { // buster and older
		return suiteRelease(base + "-security")
	}
	base, suffix, _ := strings.Cut(suite, "-")
	if !slices.Contains(codenames, base) {
		return "", false
	}
	switch suffix {
	case "", "updates", "backports", "proposed-updates":
		return base, false
	case "security":
		return base, true
	}
	return "", false
}

// ReadMirrors reads the host's apt sources under etc (/etc/apt):
// sources.list and sources.list.d/*.list (one-line style) and
// sources.list.d/*.sources (deb822). It returns the first Debian archive
// and the first security archive they name.
func ReadMirrors(etc string) (Mirrors, error) {
	var files []string
	if _, err := os.Stat(filepath.Join(etc, "sources.list")); err == nil {
		files = append(files, filepath.Join(etc, "sources.list"))
	}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etc, "sources.list.d", pat))
		files = append(files, m...)
	}
	var all []Source
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Mirrors{}, fmt.Errorf("read apt sources: %w", err)
		}
		var srcs []Source
		if strings.HasSuffix(f, ".sources") {
			srcs = ParseDeb822Sources(string(data))
		} else {
			srcs = ParseOneLineSources(string(data))
		}
		all = append(all, srcs...)
	}
	m, ok := FindMirrors(all)
	if !ok {
		return Mirrors{}, fmt.Errorf("%w (%s: %d files)", ErrNoMirror, etc, len(files))
	}
	return m, nil
}

// FindMirrors picks the Debian archive and the security archive from
// sources: the first entry with a suite of a Debian release, and the
// first with a security suite.
func FindMirrors(sources []Source) (Mirrors, bool) {
	var m Mirrors
	for _, s := range sources {
		for _, suite := range s.Suites {
			rel, sec := suiteRelease(suite)
			switch {
			case rel == "":
			case sec && m.Security.URI == "":
				m.Security = Source{URI: s.URI, SignedBy: s.SignedBy}
			case !sec && m.Archive.URI == "":
				m.Archive = Source{URI: s.URI, SignedBy: s.SignedBy}
			}
		}
	}
	return m, m.Archive.URI != ""
}

// ParseOneLineSources parses sources.list lines:
// "deb [signed-by=/path arch=amd64] URI SUITE COMPONENT...". Only "deb"
// lines count; comments and "deb-src" lines are skipped.
func ParseOneLineSources(data string) []Source {
	var out []Source
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		var s Source
		if strings.HasPrefix(f[0], "[") {
			// Options until the word that ends with "]".
			for len(f) > 0 {
				opt := strings.Trim(f[0], "[]")
				end := strings.HasSuffix(f[0], "]")
				f = f[1:]
				if k, v, ok := strings.Cut(opt, "="); ok && k == "signed-by" {
					s.SignedBy = v
				}
				if end {
					break
				}
			}
		}
		if len(f) < 2 {
			continue
		}
		s.URI, s.Suites, s.Components = f[0], []string{f[1]}, f[2:]
		out = append(out, s)
	}
	return out
}

// ParseDeb822Sources parses a .sources file: stanzas of fields separated
// by blank lines. Stanzas with "Enabled: no" or without the "deb" type
// are skipped; an entry with several URIs yields one Source per URI.
func ParseDeb822Sources(data string) []Source {
	var out []Source
	fields := map[string]string{}
	var last string
	flush := func() {
		defer func() { fields, last = map[string]string{}, "" }()
		if len(fields) == 0 || strings.EqualFold(fields["enabled"], "no") {
			return
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") {
			return
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, Source{
				URI:        uri,
				Suites:     strings.Fields(fields["suites"]),
				Components: strings.Fields(fields["components"]),
				SignedBy:   fields["signed-by"],
			})
		}
	}
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += "\n" + line
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}

// sourcesFile writes the deb822 sources of suites on the mirrors: the
// security suites on the security archive, the others on the main one.
// A security suite is left out when the host names no security archive.
func sourcesFile(m Mirrors, suites []string) (string, []string) {
	var main, sec, missing []string
	for _, s := range suites {
		if _, isSec := suiteRelease(s); isSec {
			if m.Security.URI == "" {
				missing = append(missing, s)
				continue
			}
			sec = append(sec, s)
		} else {
			main = append(main, s)
		}
	}
	var b strings.Builder
	stanza := func(src Source, suites []string) {
		if len(suites) == 0 {
			return
		}
		fmt.Fprintf(&b, "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n", src.URI, strings.Join(suites, " "))
		if src.SignedBy != "" {
			fmt.Fprintf(&b, "Signed-By: %s\n", src.SignedBy)
		}
		b.WriteString("\n")
	}
	stanza(m.Archive, main)
	stanza(m.Security, sec)
	return b.String(), missing
}
