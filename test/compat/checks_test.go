package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
)

// checks holds one check per case of cases.txt, by id. A check asserts
// what a script or a user sees: status codes, bodies, output and exit
// codes.
var checks = map[string]func(t *testing.T, e *env, it item){}

func init() {
	for id, c := range restChecks {
		checks[id] = c
	}
	for id, c := range agentChecks {
		checks[id] = c
	}
}

var kernelID = kernel.KernelID(fakekernel.Version)

const formType = "application/x-www-form-urlencoded"

// page is ePortal's paged envelope, with servers as maps of their fields.
type serverPage struct {
	Count  int              `json:"count"`
	Limit  int              `json:"limit"`
	Offset int              `json:"offset"`
	Result []map[string]any `json:"result"`
}

// register registers a server by ePortal's API and returns its id.
func register(t *testing.T, p *portal, key, hostname string) string {
	t.Helper()
	a := p.call(t, "POST", "/admin/api/register", formType, form("key", key, "hostname", hostname), nil)
	var out struct {
		ServerID string `json:"server_id"`
	}
	a.json(t, &out)
	if a.code != 200 || out.ServerID == "" {
		t.Fatalf("register %s: %d %s", hostname, a.code, a.body)
	}
	return out.ServerID
}

func servers(t *testing.T, p *portal, query string) serverPage {
	t.Helper()
	a := p.api(t, "GET", "/admin/api/servers?"+query)
	if a.code != 200 {
		t.Fatalf("GET /admin/api/servers?%s: %d %s", query, a.code, a.body)
	}
	var out serverPage
	a.json(t, &out)
	return out
}

func wantAnswer(t *testing.T, what string, a answer, code int, body string) {
	t.Helper()
	if a.code != code || strings.TrimSpace(a.body) != body {
		t.Errorf("%s: %d %s\nwant %d %s", what, a.code, strings.TrimSpace(a.body), code, body)
	}
}

func wantCode(t *testing.T, what string, a answer, code int, contains string) {
	t.Helper()
	if a.code != code || !strings.Contains(a.body, contains) {
		t.Errorf("%s: %d %s\nwant %d with %q", what, a.code, strings.TrimSpace(a.body), code, contains)
	}
}

// eportalTimeRE is how ePortal writes a time.
var eportalTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$`)

// serverFields are ePortal's documented fields of a server, then kcare's.
var serverFields = []string{"id", "ip", "hostname", "key", "feed", "registered", "checkin", "updated", "euname", "release",
	"kernel_id", "patch_level", "patch_type", "tags", "uptime", "version", "virt", "kcare_version", "distro",
	"distro_version", "machine", "processor", "build_id", "last_result"}

var restChecks = map[string]func(t *testing.T, e *env, it item){
	"rest-basic-auth": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "servers as admin:password", p.call(t, "GET", "/admin/api/servers", "", "", map[string]string{"user": "admin:" + p.adminPW}), 200, `"result":`)
		wantCode(t, "servers with a wrong password", p.call(t, "GET", "/admin/api/servers", "", "", map[string]string{"user": "admin:wrong"}), 401, "wrong user name or password")
		wantCode(t, "add a key as the read-only user", p.call(t, "POST", "/admin/api/keys/", formType, form("key", "basic-ro"), map[string]string{"user": "reader:compat reader password"}), 403, "admin role required")
		wantCode(t, "add a key as admin:password", p.call(t, "POST", "/admin/api/keys/", formType, form("key", "basic-admin"), map[string]string{"user": "admin:" + p.adminPW}), 201, `"key":"basic-admin"`)
	},
	"rest-api-key": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "servers with X-Api-Key", p.call(t, "GET", "/admin/api/servers", "", "", map[string]string{"X-Api-Key": p.ro}), 200, `"result":`)
		wantCode(t, "servers with a wrong X-Api-Key", p.call(t, "GET", "/admin/api/servers", "", "", map[string]string{"X-Api-Key": "nope"}), 401, "bad API key")
		wantCode(t, "servers with nothing", p.call(t, "GET", "/admin/api/servers", "", "", nil), 401, "X-Api-Key or HTTP basic auth")
	},
	"rest-auth-header": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "an API key in another header", p.call(t, "GET", "/admin/api/servers", "", "", map[string]string{"X-Auth-Token": p.admin}), 401, "X-Api-Key or HTTP basic auth")
	},
	"rest-servers": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		id := register(t, f.portal, "compat-key-a", "fields-1.example.com")
		out := servers(t, f.portal, "hostname=fields-1.example.com")
		if out.Count != 1 || out.Limit != 10 || out.Offset != 0 || len(out.Result) != 1 {
			t.Fatalf("servers: %+v", out)
		}
		s := out.Result[0]
		var keys []string
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := slices.Clone(serverFields)
		sort.Strings(want)
		if !slices.Equal(keys, want) {
			t.Errorf("fields %v\nwant %v", keys, want)
		}
		if s["id"] != id || s["hostname"] != "fields-1.example.com" || s["key"] != "compat-key-a" || s["feed"] != "main" || s["patch_type"] != "default" {
			t.Errorf("server %v", s)
		}
		if r, _ := s["registered"].(string); !eportalTimeRE.MatchString(r) {
			t.Errorf("registered %q is not in ePortal's form 2021-04-08 16:43:23.907671", r)
		}
		for _, null := range []string{"checkin", "updated", "tags", "uptime", "version", "virt", "distro", "distro_version", "machine", "processor"} {
			if s[null] != nil {
				t.Errorf("%s = %v, want null", null, s[null])
			}
		}
	},
	"rest-servers-default-limit": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		for i := range 11 {
			register(t, p, "compat-key-b", fmt.Sprintf("limit-%02d", i))
		}
		out := servers(t, p, "hostname=limit-%25")
		if out.Count != 11 || out.Limit != 10 || len(out.Result) != 10 {
			t.Errorf("count %d limit %d, %d servers; want 11, 10, 10", out.Count, out.Limit, len(out.Result))
		}
		out = servers(t, p, "hostname=limit-%25&offset=10")
		if len(out.Result) != 1 || out.Result[0]["hostname"] != "limit-10" {
			t.Errorf("offset 10: %v", out.Result)
		}
		wantCode(t, "limit 1001", p.api(t, "GET", "/admin/api/servers?limit=1001"), 400, "limit: from 1 to 1000")
	},
	"rest-register": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		a := p.call(t, "POST", "/admin/api/register", formType, form("key", "compat-key-a", "hostname", "reg-form"), nil)
		wantCode(t, "register (form)", a, 200, `"server_secret":"`)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("key", "compat-key-a")
		mw.WriteField("hostname", "reg-multipart")
		mw.Close()
		a = p.call(t, "POST", "/admin/api/register", mw.FormDataContentType(), body.String(), nil)
		wantCode(t, "register (curl -F key=...)", a, 200, `"server_id":"`)
		if out := servers(t, p, "hostname=reg-%25"); out.Count != 2 {
			t.Errorf("servers reg-%%: %d, want 2", out.Count)
		}
		a = p.call(t, "POST", "/admin/api/kcare/register", formType, form("key", "compat-key-a", "hostname", "reg-kcare-url"), nil)
		wantCode(t, "register under REGISTRATION_URL .../admin/api/kcare", a, 200, `"server_id":"`)
	},
	"rest-register-errors": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantAnswer(t, "unknown key", p.call(t, "POST", "/admin/api/register", formType, form("key", "no-such-key"), nil), 400, `{"error":"invalid-key"}`)
		p.api(t, "POST", "/admin/api/keys/?key=full-key&server_limit=1")
		register(t, p, "full-key", "full-1")
		wantAnswer(t, "full key", p.call(t, "POST", "/admin/api/register", formType, form("key", "full-key", "hostname", "full-2"), nil), 400, `{"error":"key-limit-reached"}`)
	},
	"rest-delete-server": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		register(t, p, "compat-key-a", "del-by-name")
		id := register(t, p, "compat-key-a", "del-by-id")
		wantAnswer(t, "delete by hostname", p.api(t, "POST", "/admin/api/delete_server?hostname=del-by-name"), 200, `{"result":1}`)
		wantAnswer(t, "delete it again", p.api(t, "POST", "/admin/api/delete_server?hostname=del-by-name"), 200, `{"result":0}`)
		wantAnswer(t, "delete by server_id", p.api(t, "POST", "/admin/api/delete_server?server_id="+id), 200, `{"result":1}`)
		wantCode(t, "delete naming nothing", p.api(t, "POST", "/admin/api/delete_server"), 400, "hostname, ip or server_id")
		if out := servers(t, p, "hostname=del-%25"); out.Count != 0 {
			t.Errorf("after deletes: %d servers left", out.Count)
		}
		wantCode(t, "delete as read-only", p.call(t, "POST", "/admin/api/delete_server?ip=127.0.0.1", "", "", map[string]string{"X-Api-Key": p.ro}), 403, "admin")
	},
	"rest-delete-servers": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		before := servers(t, p, "only_count=false").Count
		wantAnswer(t, "delete servers silent for 30 days", p.api(t, "DELETE", "/admin/api/servers?checkin_age=30"), 200, `{"result":0}`)
		if after := servers(t, p, "").Count; after != before {
			t.Errorf("servers after deleting none: %d, want %d", after, before)
		}
		wantCode(t, "delete without checkin_age", p.api(t, "DELETE", "/admin/api/servers"), 400, "checkin_age: required")
	},
	"rest-feed-put": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantAnswer(t, "create", p.call(t, "POST", "/admin/api/feeds/", formType, form("name", "fput", "auto", "true"), map[string]string{"X-Api-Key": p.admin}),
			201, `{"result":{"name":"fput","auto":true,"deploy_after":0,"channel":"default"}}`)
		wantAnswer(t, "modify (JSON)", p.call(t, "POST", "/admin/api/feeds/", "application/json", `{"name":"fput","deploy_after":12}`, map[string]string{"X-Api-Key": p.admin}),
			200, `{"result":{"name":"fput","auto":true,"deploy_after":12,"channel":"default"}}`)
		wantAnswer(t, "modify (query)", p.api(t, "POST", "/admin/api/feeds/?name=fput&channel=test"),
			200, `{"result":{"name":"fput","auto":true,"deploy_after":12,"channel":"test"}}`)
		wantCode(t, "a bad channel", p.api(t, "POST", "/admin/api/feeds/?name=fput&channel=fast"), 400, "want default (stable) or test")
	},
	"rest-feed-list": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		a := p.api(t, "GET", "/admin/api/feeds/")
		wantCode(t, "feeds", a, 200, `{"name":"main","auto":true,"deploy_after":0,"channel":"default"}`)
		if !strings.HasPrefix(a.body, `{"result":[`) {
			t.Errorf("feeds: %s, want {\"result\": [...]}", a.body)
		}
	},
	"rest-feed-delete": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		p.api(t, "POST", "/admin/api/feeds/?name=fdel")
		wantAnswer(t, "delete", p.api(t, "DELETE", "/admin/api/feeds/fdel"), 200, `{"result":1}`)
		wantAnswer(t, "delete again", p.api(t, "DELETE", "/admin/api/feeds/fdel"), 200, `{"result":0}`)
		wantCode(t, "delete main", p.api(t, "DELETE", "/admin/api/feeds/main"), 400, "cannot be deleted")
	},
	"rest-key-put": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "create", p.call(t, "POST", "/admin/api/keys/", formType, form("key", "kput", "feed", "main", "note", "first", "server_limit", "3"), map[string]string{"X-Api-Key": p.admin}),
			201, `"key":"kput","feed":"main","note":"first","server_limit":3`)
		wantCode(t, "modify", p.call(t, "POST", "/admin/api/keys/", "application/json", `{"key":"kput","note":"second"}`, map[string]string{"X-Api-Key": p.admin}),
			200, `"key":"kput","feed":"main","note":"second","server_limit":3`)
		a := p.api(t, "POST", "/admin/api/keys/")
		if m := regexp.MustCompile(`"key":"([0-9a-f]{32})"`).FindStringSubmatch(a.body); a.code != 201 || m == nil {
			t.Errorf("create with no key: %d %s, want a random key", a.code, a.body)
		}
		p.api(t, "POST", "/admin/api/keys/?key=klimit&server_limit=1")
		register(t, p, "klimit", "klimit-1")
		wantAnswer(t, "register beyond server_limit", p.call(t, "POST", "/admin/api/register", formType, form("key", "klimit"), nil), 400, `{"error":"key-limit-reached"}`)
	},
	"rest-key-list": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "keys as admin", p.api(t, "GET", "/admin/api/keys/"), 200, `{"key":"compat-key-a","feed":"main","note":"first","server_limit":0`)
		wantCode(t, "keys as read-only", p.call(t, "GET", "/admin/api/keys/", "", "", map[string]string{"X-Api-Key": p.ro}), 200, `{"key":"com…","feed":"main","note":"first"`)
		wantCode(t, "a key with no note", p.api(t, "GET", "/admin/api/keys/"), 200, `{"key":"compat-key-b","feed":"main","note":null`)
	},
	"rest-key-delete": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		p.api(t, "POST", "/admin/api/keys/?key=kdel")
		wantAnswer(t, "delete", p.api(t, "DELETE", "/admin/api/keys/kdel"), 200, `{"result":1}`)
		wantAnswer(t, "delete again", p.api(t, "DELETE", "/admin/api/keys/kdel"), 200, `{"result":0}`)
	},
	"rest-patchset-list": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		status := func(feed string) string {
			a := p.api(t, "GET", "/admin/api/patchsets/?feed="+feed)
			var out struct {
				Result []struct{ Patchset, Status string } `json:"result"`
			}
			a.json(t, &out)
			var s []string
			for _, ps := range out.Result {
				s = append(s, ps.Patchset+"="+ps.Status)
			}
			return strings.Join(s, " ")
		}
		if got := status("main"); got != "KC_01=enabled KC_02=enabled KC_03=enabled" {
			t.Errorf("main: %s", got)
		}
		p.api(t, "POST", "/admin/api/feeds/?name=pslist")
		p.api(t, "POST", "/admin/api/patchsets/manage?feed=pslist&patchset=KC_02&action=enable")
		p.api(t, "POST", "/admin/api/patchsets/manage?feed=pslist&patchset=KC_03&action=enable")
		p.api(t, "POST", "/admin/api/patchsets/manage?feed=pslist&patchset=KC_03&action=disable")
		if got := status("pslist"); got != "KC_01=undeployed KC_02=enabled KC_03=disabled" {
			t.Errorf("pslist: %s", got)
		}
		wantCode(t, "an unknown feed", p.api(t, "GET", "/admin/api/patchsets/?feed=nosuch"), 404, "not found")
	},
	"rest-patchset-product": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "product=kernel", p.api(t, "GET", "/admin/api/patchsets/?product=kernel"), 200, `"KC_01"`)
		for _, prod := range []string{"user", "qemu", "db"} {
			wantCode(t, "product="+prod, p.api(t, "GET", "/admin/api/patchsets/?product="+prod), 400, "not supported by kcare: it patches the kernel only")
			wantCode(t, "manage product="+prod, p.api(t, "POST", "/admin/api/patchsets/manage?feed=main&patchset=KC_01&action=enable&product="+prod), 400, "not supported by kcare")
		}
	},
	"rest-patchset-manage": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		for _, f := range []string{"m1", "m2"} {
			p.api(t, "POST", "/admin/api/feeds/?name="+f)
		}
		wantAnswer(t, "enable-upto KC_02 in m1 and m2", p.api(t, "POST", "/admin/api/patchsets/manage?patchset=KC_02&feed=m1&feed=m2&action=enable-upto"), 200, `{"result":"ok"}`)
		for _, f := range []string{"m1", "m2"} {
			wantCode(t, f, p.api(t, "GET", "/admin/api/patchsets/?feed="+f), 200, `"KC_02","status":"enabled"`)
			wantCode(t, f, p.api(t, "GET", "/admin/api/patchsets/?feed="+f), 200, `"KC_01","status":"enabled"`)
		}
		wantCode(t, "enable in m1 and a feed that does not exist", p.api(t, "POST", "/admin/api/patchsets/manage?patchset=KC_03&feed=m1&feed=nosuch&action=enable"), 404, "nosuch")
		wantCode(t, "m1 unchanged", p.api(t, "GET", "/admin/api/patchsets/?feed=m1"), 200, `"KC_03","status":"undeployed"`)
		wantAnswer(t, "undeploy-downto KC_01 in m2", p.api(t, "POST", "/admin/api/patchsets/manage?patchset=KC_01&feed=m2&action=undeploy-downto"), 200, `{"result":"ok"}`)
		wantCode(t, "m2", p.api(t, "GET", "/admin/api/patchsets/?feed=m2"), 200, `"KC_02","status":"disabled"`)
		wantCode(t, "an unknown action", p.api(t, "POST", "/admin/api/patchsets/manage?patchset=KC_01&feed=m2&action=explode"), 400, "enable-upto")
	},
	"rest-users": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantAnswer(t, "users", p.api(t, "GET", "/admin/api/users/"), 200,
			`{"result":[{"id":1,"username":"admin","description":"admin","readonly":false},{"id":2,"username":"reader","description":"readonly","readonly":true}]}`)
	},
	"rest-set-tags": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		id := register(t, p, "compat-key-a", "tags-1")
		wantAnswer(t, "set tags", p.api(t, "POST", "/admin/api/set_tags?server_id="+id+"&tags=env:test;stage"), 200, `{"result":"ok"}`)
		if s := servers(t, p, "hostname=tags-1").Result[0]; s["tags"] != "env:test;stage" {
			t.Errorf("tags %v", s["tags"])
		}
		if n := servers(t, p, "tag=stage&hostname=tags-%25").Count; n != 1 {
			t.Errorf("tag=stage: %d servers", n)
		}
		wantAnswer(t, "no tags (JSON)", p.call(t, "POST", "/admin/api/set_tags", "application/json", `{"server_id":"`+id+`"}`, map[string]string{"X-Api-Key": p.admin}), 200, `{"result":"ok"}`)
		if s := servers(t, p, "hostname=tags-1").Result[0]; s["tags"] != nil {
			t.Errorf("tags after removing them: %v", s["tags"])
		}
		wantCode(t, "an unknown server", p.api(t, "POST", "/admin/api/set_tags?server_id=nosuch&tags=a"), 404, "not found")
	},
	"rest-bodies": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		admin := map[string]string{"X-Api-Key": p.admin}
		wantCode(t, "JSON", p.call(t, "POST", "/admin/api/keys/", "application/json", `{"key":"body-json","server_limit":2}`, admin), 201, `"server_limit":2`)
		wantCode(t, "form", p.call(t, "POST", "/admin/api/keys/", formType, "key=body-form&note=n", admin), 201, `"note":"n"`)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("key", "body-multipart")
		mw.Close()
		wantCode(t, "multipart", p.call(t, "POST", "/admin/api/keys/", mw.FormDataContentType(), body.String(), admin), 201, `"key":"body-multipart"`)
		wantCode(t, "JSON with no Content-Type", p.call(t, "POST", "/admin/api/keys/", "", `{"key":"body-bare"}`, admin), 201, `"key":"body-bare"`)
		wantCode(t, "an unknown parameter", p.call(t, "POST", "/admin/api/keys/", formType, "key=body-x&limit=5", admin), 400, "unknown parameter limit")
	},
	"rest-unknown-path": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		a := p.call(t, "GET", "/admin/api/nosuch", "", "", nil)
		wantAnswer(t, "GET", a, 404, `{"error":"no such API route: GET /admin/api/nosuch"}`)
		if a.ct != "application/json" {
			t.Errorf("Content-Type %s", a.ct)
		}
		wantAnswer(t, "POST with a token", p.api(t, "POST", "/admin/api/nosuch"), 404, `{"error":"no such API route: POST /admin/api/nosuch"}`)
		wantCode(t, "POST without one", p.call(t, "POST", "/admin/api/nosuch", "", "", nil), 401, `{"error":`)
	},
	"rest-key-patchset": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		f.api(t, "POST", "/admin/api/keys/?key=kp-key")
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "kp-key")
		wantAnswer(t, "the key's servers, no other credential", f.call(t, "GET", "/admin/api/kcare/patchset/kp-key", "", "", nil), 200,
			`{"data":[["127.0.0.1","`+kernelID+`",3]]}`)
		wantAnswer(t, "an unknown key", f.call(t, "GET", "/admin/api/kcare/patchset/no-such-key", "", "", nil), 404, `{"error":"unknown key"}`)
		wantCode(t, "a write under the path", f.call(t, "POST", "/admin/api/kcare/patchset/kp-key", "", "", nil), 401, "error")
	},
	"path-version": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantAnswer(t, "version", p.call(t, "GET", "/"+kernelID+"/version", "", "", nil), 200, "3")
		wantAnswer(t, "24h/version", p.call(t, "GET", "/24h/"+kernelID+"/version", "", "", nil), 200, "2")
	},
	"path-latest-v2": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantAnswer(t, "latest.v2", p.call(t, "GET", "/"+kernelID+"/latest.v2", "", "", nil), 200, "3")
		wantAnswer(t, "48h/latest.v2", p.call(t, "GET", "/48h/"+kernelID+"/latest.v2", "", "", nil), 200, "2")
	},
	"path-kpatch-info": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		wantCode(t, "kpatch.info", p.call(t, "GET", "/"+kernelID+"/2/kpatch.info", "", "", nil), 200, "kpatch-level: 2\nkpatch-kernel: "+fakekernel.Release)
	},
	"nagios-key":      nagiosCheck("/admin/api/kcare/nagios/"),
	"nagios-cln-path": nagiosCheck("/api/kcare/nagios/"),
	"nagios-unknown-key": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		for _, path := range []string{"/admin/api/kcare/nagios/", "/api/kcare/nagios/"} {
			wantAnswer(t, path, p.call(t, "GET", path+"no-such-key", "", "", nil), 404, "Servers not found for key no-such-key")
		}
	},
	"nagios-reseller": func(t *testing.T, e *env, it item) {
		p := e.fleet(t).portal
		p.eportal("", "reseller", "add", "res1", "--cidr", "127.0.0.0/8")
		tok := p.eportal("", "reseller", "token", "res1")
		h := newHost(t, p, "PATCH_SERVER="+p.url)
		p.api(t, "POST", "/admin/api/keys/?key=res-key")
		h.must("--register", "res-key")
		wantCode(t, "reseller", p.call(t, "GET", "/api/kcare/nagios-res/res1/"+tok, "", "", nil), 200, "uptodate=")
		wantAnswer(t, "a wrong token", p.call(t, "GET", "/api/kcare/nagios-res/res1/wrong", "", "", nil), 404, "Registration token not found for reseller")
	},
}

// nagiosCheck checks the Nagios API at prefix: a key with one server up
// to date.
func nagiosCheck(prefix string) func(t *testing.T, e *env, it item) {
	return func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		key := "nagios-" + strings.Trim(strings.ReplaceAll(prefix, "/", "-"), "-")
		f.api(t, "POST", "/admin/api/keys/?key="+key)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", key)
		a := f.call(t, "GET", prefix+key, "", "", nil)
		if a.code != 200 || !strings.HasSuffix(strings.SplitN(a.body, "\n", 2)[0], "|uptodate=1;outofdate=0;unsupported=0;inactive=0") {
			t.Errorf("GET %s%s: %d %q", prefix, key, a.code, a.body)
		}
	}
}

// failingProxy answers 503 to the first n requests, then passes them to
// the portal at target.
func failingProxy(t *testing.T, target string, n int32) (*httptest.Server, *atomic.Int32) {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	var seen atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= n {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s, &seen
}

// levelOf is the level kcarectl --info reports.
func levelOf(t *testing.T, h *host) string {
	t.Helper()
	out := h.must("--info", "--json")
	var info struct {
		Level int `json:"level"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("--info --json: %v\n%s", err, out)
	}
	return fmt.Sprint(info.Level)
}

// notSupported checks that kcarectl args exits 7 saying why.
func notSupported(t *testing.T, h *host, why string, args ...string) {
	t.Helper()
	out, errOut, code := h.kcarectl(args...)
	if code != 7 || out != "" || !strings.Contains(errOut, "not supported by kcare: "+why) {
		t.Errorf("kcarectl %s: exit %d, stdout %q, stderr %q; want exit 7 and not supported by kcare: %s", strings.Join(args, " "), code, out, errOut, why)
	}
}

var agentChecks = map[string]func(t *testing.T, e *env, it item){
	"opt-info": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		short, long := h.must("-i"), h.must("--info")
		if short != long || !strings.HasPrefix(short, "kpatch-state: patch is applied\n") {
			t.Errorf("-i:\n%s\n--info:\n%s", short, long)
		}
	},
	"opt-update": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		h.must("--unload")
		if out := h.must("-u"); !strings.Contains(out, "level 3") {
			t.Errorf("-u: %s", out)
		}
		if l := levelOf(t, h); l != "3" {
			t.Errorf("level after -u: %s", l)
		}
	},
	"opt-smart-update": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		h.must("--unload")
		h.writeConf("PATCH_SERVER="+f.url, "AUTO_UPDATE_DELAY=2d")
		h.must("--smart-update")
		if l := levelOf(t, h); l != "2" {
			t.Errorf("--smart-update with AUTO_UPDATE_DELAY=2d: level %s, want 2", l)
		}
		h.must("--update")
		if l := levelOf(t, h); l != "3" {
			t.Errorf("--update (AUTO_UPDATE_DELAY does not apply): level %s, want 3", l)
		}
	},
	"opt-unload": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		h.must("--unload")
		if out := h.must("--info"); !strings.HasPrefix(out, "kpatch-state: no patches applied") {
			t.Errorf("--info after --unload:\n%s", out)
		}
	},
	"opt-auto-update": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		h.must("--unload")
		h.writeConf("PATCH_SERVER="+f.url, "AUTO_UPDATE=False")
		if out := h.must("--auto-update"); out != "" || levelOf(t, h) != "0" {
			t.Errorf("--auto-update with AUTO_UPDATE=False: %q, level %s", out, levelOf(t, h))
		}
		h.writeConf("PATCH_SERVER="+f.url, "AUTO_UPDATE=True")
		if out := h.must("--auto-update"); out != "Kernel is patched: level 3, effective release 6.1.0-56.kcare3-amd64\n" {
			t.Errorf("--auto-update: %q", out)
		}
	},
	"opt-patch-info": func(t *testing.T, e *env, it item) {
		h := registeredHost(t, e)
		if out := h.must("--patch-info"); !strings.Contains(out, "kpatch-name: "+fakekernel.Release+"/CVE-") {
			t.Errorf("--patch-info:\n%s", out)
		}
	},
	"opt-status": func(t *testing.T, e *env, it item) {
		h := registeredHost(t, e)
		if out, _, code := h.kcarectl("--status"); code != 0 || out != "Kernel is up to date: level 3\n" {
			t.Errorf("--status: exit %d %q", code, out)
		}
	},
	"opt-force": func(t *testing.T, e *env, it item) {
		notSupported(t, newHost(t, nil), "--force", "--update", "--force")
	},
	"opt-uname": func(t *testing.T, e *env, it item) {
		h := registeredHost(t, e)
		if out := h.must("--uname"); out != "6.1.0-56.kcare3-amd64\n" {
			t.Errorf("--uname: %q", out)
		}
	},
	"opt-license-info": func(t *testing.T, e *env, it item) {
		h := registeredHost(t, e)
		if out := h.must("--license-info"); !strings.Contains(out, "key: compat-key-a\nfeed: main\n") {
			t.Errorf("--license-info:\n%s", out)
		}
	},
	"opt-register": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		if out := h.must("--register", "compat-key-b"); !strings.HasPrefix(out, "Server registered (id ") {
			t.Errorf("--register: %q", out)
		}
	},
	"opt-register-autoretry": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		// Without it, a portal that answers 503 to the client's three tries
		// is a failure.
		proxy, _ := failingProxy(t, f.url, 3)
		h := newHost(t, f.portal, "PATCH_SERVER="+proxy.URL)
		if _, errOut, code := h.kcarectl("--register", "compat-key-b"); code != 1 || !strings.Contains(errOut, "503") {
			t.Errorf("--register while the portal answers 503: exit %d %s", code, errOut)
		}
		proxy, seen := failingProxy(t, f.url, 3)
		h = newHost(t, f.portal, "PATCH_SERVER="+proxy.URL)
		out, errOut, code := h.kcarectl("--register", "compat-key-b", "--register-autoretry")
		if code != 0 || !strings.HasPrefix(out, "Server registered") || !strings.Contains(errOut, "trying again in") || seen.Load() < 4 {
			t.Errorf("--register --register-autoretry: exit %d %q %q after %d requests", code, out, errOut, seen.Load())
		}
		// A refusal is final.
		if _, errOut, code := h.kcarectl("--register", "no-such-key", "--register-autoretry"); code != 1 || strings.Contains(errOut, "trying again") {
			t.Errorf("--register-autoretry with an unknown key: exit %d %s", code, errOut)
		}
	},
	"opt-unregister": func(t *testing.T, e *env, it item) {
		h := registeredHost(t, e)
		if out := h.must("--unregister"); out != "Server unregistered\n" {
			t.Errorf("--unregister: %q", out)
		}
	},
	"opt-userspace-update": func(t *testing.T, e *env, it item) {
		notSupported(t, newHost(t, nil), "--userspace-update", "--userspace-update", "libs")
	},
	"opt-test": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "PREFIX=48h")
		h.must("--register", "compat-key-a")
		if l := levelOf(t, h); l != "2" {
			t.Fatalf("PREFIX=48h: level %s, want 2", l)
		}
		h.must("--update", "--test") // test admits every stable level
		if l := levelOf(t, h); l != "3" {
			t.Errorf("--update --test: level %s, want 3", l)
		}
		if _, errOut, code := h.kcarectl("--update", "--test", "--prefix", "12h"); code != 2 || !strings.Contains(errOut, "--test is --prefix test") {
			t.Errorf("--test --prefix 12h: exit %d %s", code, errOut)
		}
	},
	"opt-prefix": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		h.must("--unload")
		h.must("--update", "--prefix", "24h")
		if l := levelOf(t, h); l != "2" {
			t.Errorf("--prefix 24h: level %s, want 2", l)
		}
		if _, _, code := h.kcarectl("--update", "--prefix", "7d"); code == 0 {
			t.Errorf("--prefix 7d accepted")
		}
	},
	"opt-version": func(t *testing.T, e *env, it item) {
		if out := newHost(t, nil).must("--version"); !regexp.MustCompile(`^kcarectl \S+\n$`).MatchString(out) {
			t.Errorf("--version: %q", out)
		}
	},
	"opt-import-key": func(t *testing.T, e *env, it item) {
		h := newHost(t, nil)
		other := filepath.Join(t.TempDir(), "other.asc")
		pub, _ := otherSigner.PublicKey()
		os.WriteFile(other, pub, 0o644)
		out := h.must("--import-key", other)
		if !strings.HasPrefix(out, "Imported key "+otherSigner.Fingerprint()) {
			t.Errorf("--import-key: %q, want the fingerprint %s", out, otherSigner.Fingerprint())
		}
		if _, err := os.Stat(filepath.Join(h.root, "etc/sysconfig/kcare/keys", "imported-"+strings.ToLower(otherSigner.Fingerprint()[24:])+".asc")); err != nil {
			t.Errorf("the key is not in the keyring directory: %v", err)
		}
		junk := filepath.Join(t.TempDir(), "junk.asc")
		os.WriteFile(junk, []byte("not a key\n"), 0o644)
		if _, errOut, code := h.kcarectl("--import-key", junk); code != 1 || !strings.Contains(errOut, "not an OpenPGP public key") {
			t.Errorf("--import-key junk: exit %d %s", code, errOut)
		}
	},
	"opt-set-monitoring-key": func(t *testing.T, e *env, it item) {
		notSupported(t, newHost(t, nil), "--set-monitoring-key", "--set-monitoring-key", "0123456789abcdef")
	},
	"opt-freezer": func(t *testing.T, e *env, it item) {
		for _, mode := range []string{"none", "full", "smart"} {
			notSupported(t, newHost(t, nil), "--freezer", "--update", "--freezer", mode)
		}
	},
	"opt-check": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url, "PREFIX=48h")
		h.must("--register", "compat-key-a")
		h.writeConf("PATCH_SERVER=" + f.url)
		if out, _, code := h.kcarectl("--check"); code != 0 || out != "New patches available: level 3 (applied: 2)\n" {
			t.Errorf("--check: exit %d %q", code, out)
		}
	},
	"opt-doctor": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--register", "compat-key-a")
		out, _, code := h.kcarectl("--doctor")
		want := []string{"kernel: ok   " + fakekernel.Release, "keys:   ok   2 trusted", "portal: ok   " + f.url, "state:  ok   recorded and loaded agree (level 3, 1 kcare livepatches loaded)", "all 4 checks passed"}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("--doctor lacks %q:\n%s", w, out)
			}
		}
		if code != 0 {
			t.Errorf("--doctor: exit %d", code)
		}
		h.writeConf("PATCH_SERVER=http://127.0.0.1:1")
		out, _, code = h.kcarectl("--doctor")
		if code != 1 || !strings.Contains(out, "portal: FAIL http://127.0.0.1:1") || !strings.Contains(out, "1 of 4 checks failed") {
			t.Errorf("--doctor with no portal: exit %d\n%s", code, out)
		}
	},
	"opt-set-patch-type": func(t *testing.T, e *env, it item) {
		h := newHost(t, nil)
		for _, typ := range []string{"extra", "free"} {
			notSupported(t, h, "kcare has one kind of patch", "--set-patch-type", typ)
		}
		if out := h.must("--set-patch-type", "default"); out != "Patch type set to default\n" {
			t.Errorf("--set-patch-type default: %q", out)
		}
	},
	"opt-set-sticky-patch": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		// The key's sticky date: the day before level 2 was released.
		day := f.now.Add(-levelAges[1] - 24*time.Hour).UTC().Format("2006-01-02")
		f.api(t, "POST", "/admin/api/keys/?key=sticky-key&sticky_patch="+day)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		h.must("--set-sticky-patch=KEY")
		h.must("--register", "sticky-key")
		if l := levelOf(t, h); l != "1" {
			t.Errorf("STICKY_PATCH=KEY with the key's date %s: level %s, want 1", day, l)
		}
		h.must("--set-sticky-patch=")
		h.must("--update")
		if l := levelOf(t, h); l != "3" {
			t.Errorf("unstuck: level %s, want 3", l)
		}
	},
	"opt-tag": func(t *testing.T, e *env, it item) {
		f := e.fleet(t)
		h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
		out := h.must("--register", "compat-key-a")
		id := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "Server registered (id "), ")")
		h.must("--tag", "env:prod;ubuntu")
		a := f.api(t, "GET", "/admin/api/servers?limit=1000")
		if !strings.Contains(a.body, `"id":"`+id+`"`) || !strings.Contains(a.body, `"tags":"env:prod;ubuntu"`) {
			t.Errorf("the portal lacks the tags of %s", id)
		}
	},
	"cmd-scanner-interface": scannerInterfaceCheck,
	"cmd-kc-eportal":        kcEportalCheck,
}

// registeredHost is a host registered under compat-key-a, at level 3.
func registeredHost(t *testing.T, e *env) *host {
	t.Helper()
	f := e.fleet(t)
	h := newHost(t, f.portal, "PATCH_SERVER="+f.url)
	h.must("--register", "compat-key-a")
	return h
}

// scannerInterfaceCheck runs the packaged kcare-scanner-interface with a
// kcarectl that records what it was asked.
func scannerInterfaceCheck(t *testing.T, e *env, it item) {
	script := filepath.Join("..", "..", "deploy", "packaging", "kcare-scanner-interface")
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	stub := "#!/bin/sh\necho \"$@\" >> " + log + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kcarectl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "KCARECTL="+filepath.Join(dir, "kcarectl"))
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if _, code := run("init", "scanner1", "scanner2"); code != 0 {
		t.Errorf("init: exit %d", code)
	}
	if _, code := run("disable"); code != 0 {
		t.Errorf("disable: exit %d", code)
	}
	if out, code := run("explode"); code != 2 || !strings.Contains(out, "usage") {
		t.Errorf("an unknown command: exit %d %q", code, out)
	}
	calls, _ := os.ReadFile(log)
	if want := "--scanner-interface enable scanner1 scanner2\n--scanner-interface disable\n"; string(calls) != want {
		t.Errorf("kcarectl was run as:\n%s\nwant:\n%s", calls, want)
	}
	if out, code := run("init"); code != 2 || !strings.Contains(out, "name the users") {
		t.Errorf("init with no users: exit %d %q", code, out)
	}
}

// kcEportalCheck: the packages link kc.eportal to eportal, and eportal
// answers under that name.
func kcEportalCheck(t *testing.T, e *env, it item) {
	p := e.fleet(t).portal
	link := filepath.Join(t.TempDir(), "kc.eportal")
	if err := os.Symlink(p.bin, link); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(link, "key", "list", "--data", p.data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "compat-key-a") {
		t.Errorf("kc.eportal key list: %v\n%s", err, out)
	}
	pkg, err := os.ReadFile(filepath.Join("..", "..", "scripts", "build-packages.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ln -s eportal", "usr/bin/kc.eportal", "usr/bin/kcare-scanner-interface"} {
		if !bytes.Contains(pkg, []byte(want)) {
			t.Errorf("scripts/build-packages.sh does not install %s", want)
		}
	}
}
