package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/store"
)

// page is what every template gets.
type page struct {
	Title string
	Nav   string
	User  string
	Role  apitype.Role
	Admin bool
	CSRF  string
	// CSSVersion names this build's stylesheet, so a browser that
	// cached another fetches it again.
	CSSVersion string
	// Stopped are the rollouts halted or rolled back, which every page
	// of a signed-in operator names in a banner.
	Stopped []store.Rollout
	Data    any
}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02")
	},
	"dash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
	"join": strings.Join,
	// query is a link to this page with the query q, which the handler
	// made with url.Values.Encode: already escaped, so the template must
	// not escape it again (it would make the whole query one value).
	"query": func(q string) template.URL { return template.URL("?" + q) },
	// hours is a feed's delay as the forms take it: whole hours.
	"hours": func(d time.Duration) string {
		if d <= 0 {
			return "none"
		}
		return fmt.Sprintf("%d h", int(d/time.Hour))
	},
	// withAdmin passes the page's Admin into a map of data for a
	// nested template.
	"withAdmin": func(admin bool, data map[string]any) map[string]any {
		out := map[string]any{"Admin": admin}
		for k, v := range data {
			out[k] = v
		}
		return out
	},
	"percent": rollout.Percent,
	"inc":     func(n int) int { return n + 1 },
	"limit": func(n int) string {
		if n == 0 {
			return "unlimited"
		}
		return itoa(n)
	},
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// css is the stylesheet, served at /admin/style.css; cssVersion is a
// digest of it.
var css, cssVersion = func() ([]byte, string) {
	b, err := files.ReadFile("style.css")
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:6])
}()

// parsePages parses each page template with the layout.
func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" || base == "servertable" || base == "rollouts" {
			continue
		}
		out[base] = template.Must(template.New(base).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/servertable.html",
			"templates/rollouts.html", n))
	}
	return out
}

// render writes the page name with data, in the layout.
func (u *UI) render(w http.ResponseWriter, r *http.Request, c *reqCtx, code int, name, title string, data any) {
	p := page{Title: title, Nav: name, CSSVersion: cssVersion, Data: data}
	if c != nil && c.user != nil {
		p.User, p.Role, p.Admin, p.CSRF = c.user.Name, c.user.Role, c.admin(), c.sess.CSRF
		p.Stopped = u.stopped(r.Context())
	}
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		u.cfg.Log.Error("render", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// stylesheet serves the UI's one stylesheet, which browsers may cache:
// its address changes with it.
func (u *UI) stylesheet(w http.ResponseWriter, r *http.Request, c *reqCtx) error {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, err := w.Write(css)
	return err
}
