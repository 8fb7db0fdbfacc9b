// Package compat is the compatibility suite: cases.txt lists every
// endpoint, option and kcare.conf setting TuxCare documents for ePortal
// and KernelCare, each with the page and version it follows and whether
// kcare supports it, supports it with a difference, or refuses it; each
// case here checks that against a real eportal serve and kcarectl on a
// fake kernel; docs/compatibility.md is generated from the list.
package compat

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/compatibility.md from cases.txt")

// A page is a documentation page cases follow.
type page struct{ key, title, url string }

// A item is one documented endpoint, option or setting.
type item struct {
	id, group, item, page, version, status, note, sample string
	line                                                 int
}

// The statuses.
const (
	supported   = "supported"
	difference  = "difference"
	unsupported = "unsupported"
)

// readCases parses cases.txt.
func readCases(t *testing.T) ([]page, []item) {
	t.Helper()
	f, err := os.Open("cases.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pages []page
	var items []item
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Split(line, "|")
		for i := range fs {
			fs[i] = strings.TrimSpace(fs[i])
		}
		if fs[0] == "page" {
			if len(fs) != 4 {
				t.Fatalf("cases.txt:%d: a page has 4 fields, not %d", n, len(fs))
			}
			pages = append(pages, page{fs[1], fs[2], fs[3]})
			continue
		}
		if len(fs) != 8 {
			t.Fatalf("cases.txt:%d: a case has 8 fields, not %d", n, len(fs))
		}
		it := item{fs[0], fs[1], fs[2], fs[3], fs[4], fs[5], fs[6], fs[7], n}
		switch {
		case !slices.Contains([]string{supported, difference, unsupported}, it.status):
			t.Fatalf("cases.txt:%d: status %q", n, it.status)
		case it.status != supported && it.note == "":
			t.Fatalf("cases.txt:%d: a %s needs a note saying which or why", n, it.status)
		case !slices.ContainsFunc(pages, func(p page) bool { return p.key == it.page }):
			t.Fatalf("cases.txt:%d: page %q is not listed", n, it.page)
		case it.version == "":
			t.Fatalf("cases.txt:%d: no version", n)
		case (it.group == "conf" || it.group == "filter") && it.sample == "":
			t.Fatalf("cases.txt:%d: a %s case needs a sample value", n, it.group)
		case slices.ContainsFunc(items, func(o item) bool { return o.id == it.id }):
			t.Fatalf("cases.txt:%d: %s twice", n, it.id)
		}
		items = append(items, it)
	}
	return pages, items
}

// env is what the cases share: one portal with three levels and two keys.
type env struct {
	t          *testing.T // the test the portal lives as long as
	once       sync.Once
	f          *fleet
	filterOnce sync.Once
}

func (e *env) fleet(t *testing.T) *fleet {
	e.once.Do(func() { e.f = newFleet(e.t) })
	if e.f == nil {
		t.Fatal("the shared portal did not start")
	}
	return e.f
}

// TestCases runs every case of cases.txt; a case without a check, and a
// check without a case, fail.
func TestCases(t *testing.T) {
	_, items := readCases(t)
	e := &env{t: t}
	for _, it := range items {
		if checks[it.id] == nil {
			t.Errorf("cases.txt:%d: %s has no check", it.line, it.id)
		}
	}
	for id := range checks {
		if !slices.ContainsFunc(items, func(it item) bool { return it.id == id }) {
			t.Errorf("check %s is not in cases.txt", id)
		}
	}
	for _, it := range items {
		if check := checks[it.id]; check != nil {
			t.Run(it.id, func(t *testing.T) { check(t, e, it) })
		}
	}
}

// TestCompatibilityDoc: docs/compatibility.md is what cases.txt and
// compatibility.head.md make; -update writes it.
func TestCompatibilityDoc(t *testing.T) {
	pages, items := readCases(t)
	head, err := os.ReadFile("compatibility.head.md")
	if err != nil {
		t.Fatal(err)
	}
	got := string(head) + render(pages, items)
	path := filepath.Join("..", "..", "docs", "compatibility.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s (go test ./test/compat -run TestCompatibilityDoc -update writes it): %v", path, err)
	}
	if string(want) != got {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := 0; i < max(len(wl), len(gl)); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Fatalf("%s is not what cases.txt makes (go test -update rewrites it); line %d:\n got: %s\nwant: %s", path, i+1, g, w)
			}
		}
	}
}

var groupTitles = []struct{ group, title string }{
	{"rest", "ePortal's REST API"},
	{"filter", "The server listing's filters (GET /admin/api/servers)"},
	{"path", "KernelCare's patch-server paths"},
	{"nagios", "The Nagios API"},
	{"option", "kcarectl's options"},
	{"conf", "kcare.conf"},
	{"command", "Commands"},
}

// render is the generated part of docs/compatibility.md: a table per
// group, then the pages.
func render(pages []page, items []item) string {
	var b strings.Builder
	counts := map[string]int{}
	for _, it := range items {
		counts[it.status]++
	}
	fmt.Fprintf(&b, "## Item by item\n\n%d items: %d supported, %d supported with a difference, %d not supported.\n",
		len(items), counts[supported], counts[difference], counts[unsupported])
	for _, g := range groupTitles {
		fmt.Fprintf(&b, "\n### %s\n\n| item | kcare | documented in | test |\n| --- | --- | --- | --- |\n", g.title)
		for _, it := range items {
			if it.group != g.group {
				continue
			}
			st := "supported"
			switch it.status {
			case difference:
				st = "supported, with a difference: " + it.note
			case unsupported:
				st = "**not supported**: " + it.note
			default:
				if it.note != "" {
					st += "; " + it.note
				}
			}
			pageTitle := it.page
			for _, p := range pages {
				if p.key == it.page {
					pageTitle = p.title
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s (%s) | `%s` |\n", mdCell(it.item), mdCell(st), pageTitle, it.version, it.id)
		}
	}
	b.WriteString("\n### The pages\n\n")
	for _, p := range pages {
		fmt.Fprintf(&b, "- %s: <%s>\n", p.title, p.url)
	}
	return b.String()
}

// mdCell escapes a table cell's pipes.
func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
