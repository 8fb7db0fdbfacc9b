package debian

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The sources of a Debian 12 cloud image, deb822 style.
const debianSources = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

func TestParseDeb822Sources(t *testing.T) {
	got := ParseDeb822Sources(debianSources + `
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Enabled: no
Types: deb
URIs: http://apt.example.com/disabled
Suites: bookworm
Components: main

Types: deb deb-src
URIs: http://mirror.example.com/debian http://mirror2.example.com/debian
Suites: trixie
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD9K87ZM6X
 -----END PGP PUBLIC KEY BLOCK-----
`)
	keyring := "/usr/share/keyrings/debian-archive-keyring.gpg"
	inline := "\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD9K87ZM6X\n -----END PGP PUBLIC KEY BLOCK-----"
	want := []Source{
		{"http://deb.debian.org/debian", []string{"bookworm", "bookworm-updates"}, []string{"main"}, keyring},
		{"http://deb.debian.org/debian-security", []string{"bookworm-security"}, []string{"main"}, keyring},
		{"http://mirror.example.com/debian", []string{"trixie"}, []string{"main", "contrib"}, inline},
		{"http://mirror2.example.com/debian", []string{"trixie"}, []string{"main", "contrib"}, inline},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseDeb822Sources =\n%q\nwant\n%q", got, want)
	}
}

func TestParseOneLineSources(t *testing.T) {
	got := ParseOneLineSources(`# a site mirror behind a proxy
deb [arch=amd64 signed-by=/etc/apt/keyrings/site.gpg] http://apt.example.com/debian bookworm main contrib
deb-src http://apt.example.com/debian bookworm main
deb http://apt.example.com/debian-security bookworm-security main # security
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb [ signed-by=/k.gpg ] http://apt.example.com/debian bookworm-backports main
`)
	want := []Source{
		{"http://apt.example.com/debian", []string{"bookworm"}, []string{"main", "contrib"}, "/etc/apt/keyrings/site.gpg"},
		{"http://apt.example.com/debian-security", []string{"bookworm-security"}, []string{"main"}, ""},
		{"https://packages.cloud.google.com/apt", []string{"cloud-sdk-bookworm"}, []string{"main"}, ""},
		{"http://apt.example.com/debian", []string{"bookworm-backports"}, []string{"main"}, "/k.gpg"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseOneLineSources =\n%q\nwant\n%q", got, want)
	}
}

func TestFindMirrors(t *testing.T) {
	tests := []struct {
		name    string
		sources []Source
		want    Mirrors
		ok      bool
	}{
		{"debian", ParseDeb822Sources(debianSources), Mirrors{
			Archive:  Source{URI: "http://deb.debian.org/debian", SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg"},
			Security: Source{URI: "http://deb.debian.org/debian-security", SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg"},
		}, true},
		{"third_party_first", ParseOneLineSources("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\ndeb http://apt.example.com/debian trixie main\n"), Mirrors{
			Archive: Source{URI: "http://apt.example.com/debian"},
		}, true},
		{"old_security_suite", ParseOneLineSources("deb http://m/debian buster main\ndeb http://m/debian-security buster/updates main\n"), Mirrors{
			Archive: Source{URI: "http://m/debian"}, Security: Source{URI: "http://m/debian-security"},
		}, true},
		{"none", ParseOneLineSources("deb https://deb.nodesource.com/node_20.x nodistro main\n"), Mirrors{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FindMirrors(tt.sources)
			if !reflect.DeepEqual(got, tt.want) || ok != tt.ok {
				t.Errorf("FindMirrors = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestReadMirrors(t *testing.T) {
	etc := t.TempDir()
	os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "debian.sources"), []byte(debianSources), 0o644)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "node.list.disabled"), []byte("deb http://x/debian trixie main\n"), 0o644)
	m, err := ReadMirrors(etc)
	if err != nil || m.Archive.URI != "http://deb.debian.org/debian" || m.Security.URI != "http://deb.debian.org/debian-security" {
		t.Errorf("ReadMirrors = %+v, %v", m, err)
	}
	if _, err := ReadMirrors(t.TempDir()); err == nil {
		t.Error("ReadMirrors of an empty directory: no error")
	}
}

func TestSourcesFile(t *testing.T) {
	m, _ := FindMirrors(ParseDeb822Sources(debianSources))
	got, missing := sourcesFile(m, []string{"bookworm", "bookworm-updates", "bookworm-security", "trixie"})
	want := `Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

`
	if got != want || len(missing) != 0 {
		t.Errorf("sourcesFile =\n%s\nmissing %q; want\n%s", got, missing, want)
	}
	m.Security = Source{}
	if _, missing := sourcesFile(m, []string{"trixie", "trixie-security"}); len(missing) != 1 || missing[0] != "trixie-security" {
		t.Errorf("without a security archive: missing %q; want trixie-security", missing)
	}
}
