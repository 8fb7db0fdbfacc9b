package compat

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/config"
)

var otherSigner = bundletest.Signer("kcare compat other key")

// filterFleet is the shared portal with servers every filter tells apart:
// a host at level 3 that checked in, a tagged server of key a, a server
// of key b, none of which checked in.
func filterFleet(t *testing.T, e *env) *fleet {
	t.Helper()
	f := e.fleet(t)
	e.filterOnce.Do(func() {
		h := newHost(e.t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		id := register(e.t, f.portal, "compat-key-a", "web-filter-1")
		f.api(e.t, "POST", "/admin/api/set_tags?server_id="+id+"&tags=env:prod")
		register(e.t, f.portal, "compat-key-b", "db-filter-1")
	})
	return f
}

// filterHonoured checks that a filter's sample value changes the listing
// (a supported filter) or is refused with a 400 (an unsupported one or an
// unknown parameter); it returns the listing with the filter.
func filterHonoured(t *testing.T, e *env, it item) serverPage {
	t.Helper()
	f := filterFleet(t, e)
	name := strings.TrimPrefix(it.id, "filter-")
	name = strings.ReplaceAll(name, "-", "_")
	if it.id == "filter-unknown" {
		name = "no_such_filter"
	}
	all := servers(t, f.portal, "limit=1000")
	a := f.api(t, "GET", "/admin/api/servers?"+url.Values{name: {it.sample}}.Encode())
	switch {
	case it.status == unsupported:
		wantCode(t, name+"="+it.sample, a, 400, name+": not supported by kcare: ")
		return serverPage{}
	case it.id == "filter-unknown":
		wantCode(t, name+"="+it.sample, a, 400, "unknown parameter "+name)
		return serverPage{}
	case a.code != 200:
		t.Fatalf("%s=%s: %d %s", name, it.sample, a.code, a.body)
	}
	if name == "only_count" {
		if want := fmt.Sprintf(`{"count":%d}`, all.Count); strings.TrimSpace(a.body) != want {
			t.Errorf("only_count: %s, want %s", a.body, want)
		}
		return serverPage{}
	}
	var got serverPage
	a.json(t, &got)
	full := servers(t, f.portal, "")
	if got.Count == full.Count && got.Limit == full.Limit && got.Offset == full.Offset && reflect.DeepEqual(got.Result, full.Result) {
		t.Errorf("%s=%s answers what no filter answers: ignored", name, it.sample)
	}
	return got
}

// filterChecks check each filter is honoured, and means what ePortal
// documents.
var filterChecks = map[string]func(t *testing.T, e *env, it item){
	"filter-hostname": func(t *testing.T, e *env, it item) {
		got := filterHonoured(t, e, it)
		if got.Count != 1 || got.Result[0]["hostname"] != "web-filter-1" {
			t.Errorf("hostname=web%%: %+v", got.Result)
		}
		if n := servers(t, filterFleet(t, e).portal, "hostname=web-filter").Count; n != 0 {
			t.Errorf("hostname=web-filter (no %%) matched %d servers: the whole name must match", n)
		}
	},
	"filter-ip": func(t *testing.T, e *env, it item) {
		if got := filterHonoured(t, e, it); got.Count != 0 {
			t.Errorf("ip=10.%%: %d servers", got.Count)
		}
		f := filterFleet(t, e)
		if all, lo := servers(t, f.portal, ""), servers(t, f.portal, "ip=127.0.0.%25"); lo.Count != all.Count {
			t.Errorf("ip=127.0.0.%%: %d of %d servers", lo.Count, all.Count)
		}
	},
	"filter-service-id": func(t *testing.T, e *env, it item) { filterHonoured(t, e, it) },
	"filter-feed": func(t *testing.T, e *env, it item) {
		if got := filterHonoured(t, e, it); got.Count != 0 {
			t.Errorf("feed=slow: %d servers", got.Count)
		}
	},
	"filter-key": func(t *testing.T, e *env, it item) {
		got := filterHonoured(t, e, it)
		for _, s := range got.Result {
			if s["key"] != "compat-key-b" {
				t.Errorf("key=compat-key-b listed a server of %v", s["key"])
			}
		}
	},
	"filter-registered-age": func(t *testing.T, e *env, it item) {
		if got := filterHonoured(t, e, it); got.Count != 0 {
			t.Errorf("registered_age=1 (more than a day ago): %d servers", got.Count)
		}
		f := filterFleet(t, e)
		if all, young := servers(t, f.portal, ""), servers(t, f.portal, "registered_age=-1"); young.Count != all.Count {
			t.Errorf("registered_age=-1: %d of %d", young.Count, all.Count)
		}
		wantCode(t, "registered_age=1x", f.api(t, "GET", "/admin/api/servers?registered_age=1x"), 400, "registered_age: want whole days")
	},
	"filter-checkin-age": func(t *testing.T, e *env, it item) {
		got := filterHonoured(t, e, it)
		for _, s := range got.Result {
			if s["checkin"] == nil {
				t.Errorf("checkin_age=-1 listed %v, which never checked in", s["hostname"])
			}
		}
		if got.Count == 0 {
			t.Error("checkin_age=-1 listed none")
		}
	},
	"filter-updated-age": func(t *testing.T, e *env, it item) {
		if got := filterHonoured(t, e, it); got.Count != 0 {
			t.Errorf("updated_age=3 (patches loaded more than 3 days ago): %d servers", got.Count)
		}
		young := servers(t, filterFleet(t, e).portal, "updated_age=-1&limit=1000")
		if young.Count == 0 {
			t.Error("updated_age=-1 listed none, though a host loaded patches just now")
		}
		for _, s := range young.Result {
			if s["updated"] == nil || s["patch_level"] == 0.0 {
				t.Errorf("updated_age=-1 listed %v, updated %v, level %v", s["hostname"], s["updated"], s["patch_level"])
			}
		}
	},
	"filter-is-updated": func(t *testing.T, e *env, it item) {
		got := filterHonoured(t, e, it)
		for _, s := range got.Result {
			if s["patch_level"] == 3.0 {
				t.Errorf("is_updated=false listed %v at level 3", s["hostname"])
			}
		}
	},
	"filter-limit": func(t *testing.T, e *env, it item) {
		if got := filterHonoured(t, e, it); got.Limit != 1 || len(got.Result) != 1 {
			t.Errorf("limit=1: limit %d, %d servers", got.Limit, len(got.Result))
		}
	},
	"filter-offset": func(t *testing.T, e *env, it item) {
		got := filterHonoured(t, e, it)
		all := servers(t, filterFleet(t, e).portal, "limit=2")
		if got.Offset != 1 || len(got.Result) == 0 || got.Result[0]["id"] != all.Result[1]["id"] {
			t.Errorf("offset=1: %+v", got)
		}
	},
	"filter-only-count": func(t *testing.T, e *env, it item) { filterHonoured(t, e, it) },
	"filter-tag": func(t *testing.T, e *env, it item) {
		if got := filterHonoured(t, e, it); got.Count != 1 || got.Result[0]["hostname"] != "web-filter-1" {
			t.Errorf("tag=env:prod: %+v", got.Result)
		}
	},
	"filter-unknown": func(t *testing.T, e *env, it item) { filterHonoured(t, e, it) },
}

// confRead checks that kcare reads a kcare.conf setting: with its sample
// value the configuration differs from the default, or it is refused
// (ErrNotSupported for an unsupported one) naming the key.
func confRead(t *testing.T, it item) {
	t.Helper()
	key := strings.SplitN(strings.TrimPrefix(it.item, ""), "=", 2)[0]
	key = strings.Fields(key)[0]
	f, err := config.Parse([]byte(key + "=" + it.sample + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Config()
	switch {
	case it.status == unsupported:
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "not supported by kcare: ") {
			t.Errorf("%s=%s: %v, want it refused as not supported, with why", key, it.sample, err)
		}
	case err != nil:
		t.Errorf("%s=%s refused: %v", key, it.sample, err)
	case reflect.DeepEqual(got, config.Default()):
		t.Errorf("%s=%s read as the default: ignored", key, it.sample)
	}
	if len(f.Unknown()) != 0 {
		t.Errorf("%s is not a setting kcare knows", key)
	}
}

// confRefused checks that kcarectl refuses the sample with exit 7.
func confRefused(t *testing.T, it item) {
	t.Helper()
	key := strings.Fields(it.item)[0]
	h := newHost(t, nil, key+"="+it.sample)
	out, errOut, code := h.kcarectl("--info")
	if code != 7 || out != "" || !strings.Contains(errOut, key) || !strings.Contains(errOut, "not supported by kcare: ") {
		t.Errorf("kcarectl --info with %s=%s: exit %d %q %q; want exit 7, not supported by kcare", key, it.sample, code, out, errOut)
	}
}

// recordingProxy is an HTTP proxy that records each request line and
// forwards plain requests; CONNECT is recorded and refused.
func recordingProxy(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		if r.Method == http.MethodConnect {
			http.Error(w, "no tunnels here", http.StatusForbidden)
			return
		}
		req, _ := http.NewRequest(r.Method, r.RequestURI, r.Body)
		req.Header = r.Header.Clone()
		resp, err := (&http.Transport{Proxy: nil}).RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(s.Close)
	return s, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func levelAfter(t *testing.T, h *host, want string, args ...string) {
	t.Helper()
	h.must(args...)
	if l := levelOf(t, h); l != want {
		t.Errorf("kcarectl %s: level %s, want %s", strings.Join(args, " "), l, want)
	}
}

var confChecks = map[string]func(t *testing.T, e *env, it item){
	"conf-auto-update": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "AUTO_UPDATE=False")
		h.must("--register", "compat-key-a")
		h.must("--unload")
		levelAfter(t, h, "0", "--auto-update")
	},
	"conf-patch-method":      func(t *testing.T, e *env, it item) { confRead(t, it); confRefused(t, it) },
	"conf-load-kcare-sysctl": func(t *testing.T, e *env, it item) { confRead(t, it); confRefused(t, it) },
	"conf-report-fqdn":       func(t *testing.T, e *env, it item) { confRead(t, it); confRefused(t, it) },
	"conf-force-gid":         func(t *testing.T, e *env, it item) { confRead(t, it); confRefused(t, it) },
	"conf-userspace-patches": func(t *testing.T, e *env, it item) { confRead(t, it); confRefused(t, it) },
	"conf-patch-type":        func(t *testing.T, e *env, it item) { confRead(t, it); confRefused(t, it) },
	"conf-patch-server": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+it.sample)
		if _, errOut, code := h.kcarectl("--register", "compat-key-a"); code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
			t.Errorf("register with PATCH_SERVER=%s: exit %d %s", it.sample, code, errOut)
		}
		h.writeConf("PATCH_SERVER=" + f.url)
		levelAfter(t, h, "3", "--register", "compat-key-a")
	},
	"conf-registration-url": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		// ePortal's documented kcare.conf, as Puppet and Chef write it.
		h := newHost(t, f.portal, "AUTO_UPDATE=True", "PATCH_SERVER="+f.url+"/", "REGISTRATION_URL="+f.url+"/admin/api/kcare")
		out := h.must("--register", "compat-key-b")
		if !strings.HasPrefix(out, "Server registered (id ") {
			t.Errorf("--register: %q", out)
		}
		if l := levelOf(t, h); l != "3" {
			t.Errorf("level after --register: %s", l)
		}
	},
	"conf-prefix": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "PREFIX=24h")
		levelAfter(t, h, "2", "--register", "compat-key-a")
	},
	"conf-update-policy": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		h := registeredHost(t, e)
		h.must("--unload")
		h.writeConf("PATCH_SERVER=http://127.0.0.1:1", "UPDATE_POLICY=LOCAL")
		levelAfter(t, h, "3", "--update")
	},
	"conf-ignore-unknown-kernel": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		p := newPortal(t) // no patches for any kernel
		p.eportal("", "key", "add", "--key", "empty-key")
		h := newHost(t, p, "PATCH_SERVER="+p.url)
		h.kcarectl("--register", "empty-key")
		if _, errOut, code := h.kcarectl("--auto-update"); code != 0 || !strings.Contains(errOut, "no patches for kernel") {
			t.Errorf("--auto-update, an unknown kernel: exit %d %q", code, errOut)
		}
		h.writeConf("PATCH_SERVER="+p.url, "IGNORE_UNKNOWN_KERNEL=True")
		if out, errOut, code := h.kcarectl("--auto-update"); code != 0 || out != "" || errOut != "" {
			t.Errorf("--auto-update, an unknown kernel, IGNORE_UNKNOWN_KERNEL=True: exit %d %q %q", code, out, errOut)
		}
	},
	"conf-sticky-patch-key": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		day := f.now.Add(-levelAges[0]).UTC().Format("2006-01-02")
		f.api(t, "POST", "/admin/api/keys/?key=sticky-conf-key&sticky_patch="+day)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "STICKY_PATCH=KEY")
		levelAfter(t, h, "1", "--register", "sticky-conf-key")
	},
	"conf-sticky-patch-date": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		day := f.now.Add(-levelAges[1] - 24*time.Hour).UTC().Format("020106")
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "STICKY_PATCH="+day)
		levelAfter(t, h, "1", "--register", "compat-key-a")
	},
	"conf-update-delay": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "UPDATE_DELAY=2d")
		levelAfter(t, h, "2", "--register", "compat-key-a")
		h.writeConf("PATCH_SERVER="+f.url, "UPDATE_DELAY=7d")
		levelAfter(t, h, "1", "--update") // a delay of the host's own may go down
		h.writeConf("PATCH_SERVER="+f.url, "UPDATE_DELAY=2w")
		if _, errOut, code := h.kcarectl("--update"); code != 1 || !strings.Contains(errOut, "UPDATE_DELAY") || !strings.Contains(errOut, "want hours (24h) or days (2d)") {
			t.Errorf("UPDATE_DELAY=2w: exit %d %s", code, errOut)
		}
	},
	"conf-auto-update-delay": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "AUTO_UPDATE_DELAY=48h")
		levelAfter(t, h, "3", "--register", "compat-key-a")
		h.must("--unload")
		levelAfter(t, h, "2", "--auto-update")
		h.writeConf("PATCH_SERVER="+f.url, "AUTO_UPDATE_DELAY=300")
		if _, errOut, code := h.kcarectl("--auto-update"); code != 1 || !strings.Contains(errOut, "RandomizedDelaySec") {
			t.Errorf("kcare's old AUTO_UPDATE_DELAY=300: exit %d %s", code, errOut)
		}
	},
	"conf-sticky-patchset": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "STICKY_PATCHSET=KC_01")
		levelAfter(t, h, "1", "--register", "compat-key-a")
		h.writeConf("PATCH_SERVER="+f.url, "STICKY_PATCHSET=KC_99")
		if _, errOut, code := h.kcarectl("--update"); code != 1 || !strings.Contains(errOut, `unknown STICKY_PATCHSET "KC_99"`) {
			t.Errorf("STICKY_PATCHSET=KC_99: exit %d %s", code, errOut)
		}
	},
	"conf-auto-sticky-patchset": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "AUTO_STICKY_PATCHSET=KC_02")
		levelAfter(t, h, "3", "--register", "compat-key-a")
		h.must("--unload")
		levelAfter(t, h, "2", "--auto-update")
	},
	"conf-http-proxy": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		f := e.fleet(t)
		proxy, seen := recordingProxy(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "HTTP_PROXY="+proxy.URL)
		h.must("--register", "compat-key-a")
		if s := seen(); len(s) == 0 || s[0] != "POST "+f.url+"/admin/api/register" {
			t.Errorf("the proxy saw %v", s)
		}
	},
	"conf-https-proxy": func(t *testing.T, e *env, it item) {
		confRead(t, it)
		tlsPortal := httptest.NewUnstartedServer(http.NotFoundHandler())
		tlsPortal.TLS = &tls.Config{}
		tlsPortal.StartTLS()
		t.Cleanup(tlsPortal.Close)
		proxy, seen := recordingProxy(t)
		h := newHost(t, nil, "PATCH_SERVER="+tlsPortal.URL, "HTTPS_PROXY="+proxy.URL)
		h.kcarectl("--register", "compat-key-a")
		host := strings.TrimPrefix(tlsPortal.URL, "https://")
		if s := seen(); len(s) == 0 || s[0] != "CONNECT "+host {
			t.Errorf("the proxy saw %v, want CONNECT %s", s, host)
		}
	},
}

func init() {
	for id, c := range filterChecks {
		checks[id] = c
	}
	for id, c := range confChecks {
		checks[id] = c
	}
}

// TestNothingIgnored feeds every documented kcare.conf key and REST filter
// of cases.txt, each with its sample value, and checks each is honoured
// (the configuration or the listing changes) or refused; and that every
// key kcare reads is in the list.
func TestNothingIgnored(t *testing.T) {
	_, items := readCases(t)
	e := &env{t: t}
	listed := map[string]bool{}
	for _, it := range items {
		switch it.group {
		case "conf":
			listed[strings.Fields(strings.SplitN(it.item, "=", 2)[0])[0]] = true
			t.Run(it.id, func(t *testing.T) { confRead(t, it) })
		case "filter":
			t.Run(it.id, func(t *testing.T) { filterHonoured(t, e, it) })
		}
	}
	// kcare's own settings, which KernelCare does not document.
	own := map[string]bool{"TRANSITION_TIMEOUT": true, "KEYRING_DIR": true, "CA_BUNDLE": true, "PATCH_SERVER_PIN": true, "TAGS": true}
	for _, k := range config.KnownKeys() {
		if !listed[k] && !own[k] {
			t.Errorf("kcare reads %s, which cases.txt does not list", k)
		}
	}
}
