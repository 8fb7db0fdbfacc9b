package core

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/taint"
)

// Errors of a server's authentication; each is an apitype error code's
// cause.
var (
	// ErrUnregistered: an unknown server id, a wrong secret, or no IP
	// license for a server that sent no credentials. The answer does not
	// tell which.
	ErrUnregistered = errors.New("unregistered")
	// ErrKeyRevoked: the server's activation key was deleted.
	ErrKeyRevoked = errors.New("key revoked")
	// ErrNotRegistered: unregistering a server known by its IP license.
	ErrNotRegistered = errors.New("not registered under a key")
)

// Caller is the server an agent request is from.
type Caller struct {
	Server *store.Server // as stored; for an IP-licensed server, its id and address only
	Feed   string        // the feed its updates come from
	Key    *store.Key    // its key's settings, without the server count; nil for an IP-licensed server
	// Version is the store's version when the request was authenticated;
	// 0 when it was not read.
	Version int64
}

// unknownServerHash is compared against when a server id is unknown, so
// that an unknown server and a wrong secret take as long.
var unknownServerHash = auth.HashSecret("no server has this secret")

// serverAudit is a server as the audit log shows it: no secret, its key
// masked.
func serverAudit(v *store.Server) any {
	if v == nil {
		return nil
	}
	return map[string]any{"id": v.ID, "hostname": v.Hostname, "ip": v.IP, "key": store.MaskKey(v.Key),
		"kernel": v.Release, "level": v.Level, "registered": v.Registered}
}

// Register registers a server from ip under an activation key and
// returns its id and secret. A wrong key is store.ErrInvalidKey, a full
// one store.ErrLimitReached, an address outside its ranges
// store.ErrIPNotAllowed; a bad hostname apitype.ErrBadField.
func (c *Core) Register(ctx context.Context, key, hostname, ip string) (id, secret string, err error) {
	if key == "" {
		return "", "", fmt.Errorf("register: no key: %w", store.ErrInvalidKey)
	}
	if !apitype.ValidHostname(hostname) {
		return "", "", &apitype.FieldError{Field: "hostname"}
	}
	secret = auth.NewSecret()
	srv := &store.Server{
		ID:         auth.NewSecret()[:24],
		SecretHash: auth.HashSecret(secret),
		Hostname:   hostname,
		IP:         ip,
		Registered: c.Now(),
	}
	if err := c.st.Register(ctx, key, srv); err != nil {
		return "", "", err
	}
	c.audit(ctx, Agent(srv.ID, ip), "server.register", srv.ID, fmt.Sprintf("hostname=%s ip=%s key=%s", hostname, ip, store.MaskKey(key)),
		nil, serverAudit(srv))
	return srv.ID, secret, nil
}

// Authenticate returns the registered server with id and secret (HTTP
// basic auth), or ErrUnregistered; ErrKeyRevoked when its key is gone.
func (c *Core) Authenticate(ctx context.Context, id, secret string) (*Caller, error) {
	srv, k, version, err := c.st.AgentServer(ctx, id)
	if isNotFound(err) {
		auth.SecretMatches(unknownServerHash, secret) // as long as a wrong secret takes
		return nil, fmt.Errorf("unknown server id: %w", ErrUnregistered)
	}
	if err != nil {
		return nil, err
	}
	if !auth.SecretMatches(srv.SecretHash, secret) {
		return nil, fmt.Errorf("wrong server secret: %w", ErrUnregistered)
	}
	if srv.Key == "" {
		// Stored by an IP-licensed check-in, which has no secret to match.
		return nil, fmt.Errorf("server %s has no key: %w", id, ErrUnregistered)
	}
	if k == nil {
		return nil, ErrKeyRevoked
	}
	return &Caller{Server: srv, Feed: k.Feed, Key: k, Version: version}, nil
}

// IPLicensed returns the server at ip as its IP license knows it, with
// the license's feed (resolve.IPLicense: the narrowest license holding
// ip), or ErrUnregistered when no license holds it.
func (c *Core) IPLicensed(ctx context.Context, ip string) (*Caller, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", ip, ErrUnregistered)
	}
	a = a.Unmap()
	lics, err := c.st.IPLicenses(ctx)
	if err != nil {
		return nil, err
	}
	l := resolve.IPLicense(lics, a.String())
	if l == nil {
		return nil, fmt.Errorf("no IP license holds %s: %w", a, ErrUnregistered)
	}
	srv := &store.Server{ID: "ip-" + strings.NewReplacer(":", "-", ".", "-").Replace(a.String()), IP: a.String()}
	return &Caller{Server: srv, Feed: l.Feed}, nil
}

// Unregister removes a registered server at its own request.
func (c *Core) Unregister(ctx context.Context, cl *Caller, ip string) error {
	if cl.Key == nil {
		return ErrNotRegistered
	}
	if err := c.st.DeleteServer(ctx, cl.Server.ID); err != nil {
		return err
	}
	c.audit(ctx, Agent(cl.Server.ID, ip), "server.unregister", cl.Server.ID, "", serverAudit(cl.Server), nil)
	return nil
}

// CheckIn records an agent's report, from ip. A server known by its IP
// license is recorded (or updated) in its license's feed.
func (c *Core) CheckIn(ctx context.Context, cl *Caller, in *apitype.CheckIn, ip string) error {
	if err := in.Validate(); err != nil {
		return err
	}
	now := c.Now()
	health := healthOf(in, now)
	if cl.Key == nil {
		srv := *cl.Server
		srv.Hostname, srv.Release, srv.BuildID, srv.KernelID = in.Hostname, in.Release, in.BuildID, in.KernelID
		srv.Level, srv.EffectiveRelease, srv.LastResult, srv.AgentVersion = in.Level, in.EffectiveRelease, in.Result, in.AgentVersion
		srv.Registered, srv.LastCheckin = now, now
		if in.Tags != nil {
			srv.Tags = *in.Tags
		}
		if err := c.st.UpsertIPServer(ctx, &srv, cl.Feed); err != nil || health == nil {
			return err
		}
		return c.st.RecordHealth(ctx, srv.ID, health, now)
	}
	return c.st.CheckIn(ctx, cl.Server.ID, store.Report{
		Hostname: in.Hostname, IP: ip, Release: in.Release, BuildID: in.BuildID,
		KernelID: in.KernelID, Level: in.Level, EffectiveRelease: in.EffectiveRelease,
		LastResult: in.Result, AgentVersion: in.AgentVersion, Tags: in.Tags, At: now, Health: health,
	})
}

// healthOf is the health a check-in at now reports, as the store keeps
// it; nil when it reports none. The boot began its uptime before now, to
// the second.
func healthOf(in *apitype.CheckIn, now time.Time) *store.Health {
	t := in.Telemetry
	if t == nil {
		return nil
	}
	h := &store.Health{BootID: t.BootID, Booted: now.Add(-time.Duration(t.Uptime) * time.Second).Truncate(time.Second),
		Taint: taint.Mask(t.Taint), Warnings: t.Warnings, Oopses: t.Oopses, CountsFrom: t.CountsFrom, Level: in.Level}
	if a := t.LastApply; a != nil {
		h.Apply = &store.Apply{Level: a.Level, OK: a.OK, At: a.At, BootID: a.BootID, Taint: taint.Mask(a.Taint),
			Warnings: a.Warnings, Oopses: a.Oopses}
	}
	return h
}

// DeleteServer deletes a server.
func (c *Core) DeleteServer(ctx context.Context, a Actor, id string) error {
	before, err := c.st.Server(ctx, id)
	if err != nil {
		return err
	}
	if err := c.st.DeleteServer(ctx, id); err != nil {
		return err
	}
	c.audit(ctx, a, "server.delete", id, "", serverAudit(before), nil)
	return nil
}

// CleanServers deletes the servers that have not checked in for age (and
// those that never did, registered before then) and returns how many.
func (c *Core) CleanServers(ctx context.Context, a Actor, age time.Duration) (int, error) {
	if age <= 0 {
		return 0, invalid("clean servers: the age must be positive")
	}
	n, err := c.st.CleanServers(ctx, c.Now().Add(-age))
	if err != nil {
		return n, err
	}
	c.audit(ctx, a, "server.clean", fmt.Sprintf("inactive %dd", int(age/(24*time.Hour))), fmt.Sprintf("%d deleted", n), nil, nil)
	return n, nil
}

// Server returns a server.
func (c *Core) Server(ctx context.Context, id string) (*store.Server, error) {
	return c.st.Server(ctx, id)
}

// Servers returns the servers f selects. A check-in age counts back from
// the portal's clock.
func (c *Core) Servers(ctx context.Context, f store.ServerFilter) ([]store.Server, error) {
	f.Now = c.Now()
	return c.st.Servers(ctx, f)
}

// CheckinHistory returns a server's newest check-ins, newest first.
func (c *Core) CheckinHistory(ctx context.Context, id string, limit int) ([]store.Checkin, error) {
	return c.st.CheckinHistory(ctx, id, limit)
}

// ServerLevel returns the level a server last reported, or nil when the
// portal does not hold it (any more) or the server has none applied.
func (c *Core) ServerLevel(ctx context.Context, srv *store.Server) (*store.Level, error) {
	if srv.Level <= 0 || srv.BuildID == "" {
		return nil, nil
	}
	levels, err := c.st.Levels(ctx, srv.BuildID)
	if err != nil {
		return nil, err
	}
	for i := range levels {
		if levels[i].Level == srv.Level {
			return &levels[i], nil
		}
	}
	return nil, nil
}

// FixedCVEs lists the CVEs fixed by the levels up to the one a server
// last reported, oldest level first.
func (c *Core) FixedCVEs(ctx context.Context, srv *store.Server) ([]store.CVE, error) {
	if srv.BuildID == "" || srv.Level <= 0 {
		return nil, nil
	}
	levels, err := c.st.Levels(ctx, srv.BuildID)
	if err != nil {
		return nil, err
	}
	var cves []store.CVE
	for _, l := range levels {
		if l.Level <= srv.Level {
			cves = append(cves, l.CVEs...)
		}
	}
	return cves, nil
}

// CountServers counts the servers f selects, ignoring its limit and
// offset. A check-in or registration age counts back from the portal's
// clock.
func (c *Core) CountServers(ctx context.Context, f store.ServerFilter) (int, error) {
	f.Now = c.Now()
	return c.st.CountFiltered(ctx, f)
}

// DeleteServers deletes every server f selects, each recorded in the
// audit log, and returns how many.
func (c *Core) DeleteServers(ctx context.Context, a Actor, f store.ServerFilter) (int, error) {
	f.Now = c.Now()
	list, err := c.st.Servers(ctx, f)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, srv := range list {
		err := c.DeleteServer(ctx, a, srv.ID)
		if isNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// SetServerTags replaces a server's tags ("k:v;k2" as kcarectl --tag sets
// them; "" for none), as an operator asks.
func (c *Core) SetServerTags(ctx context.Context, a Actor, id, tags string) error {
	ci := apitype.CheckIn{Tags: &tags}
	if err := ci.Validate(); err != nil {
		return err
	}
	before, err := c.st.Server(ctx, id)
	if err != nil {
		return err
	}
	if err := c.st.SetServerTags(ctx, id, tags); err != nil {
		return err
	}
	after := *before
	after.Tags = tags
	c.audit(ctx, a, "server.tags", id, "tags="+tags, serverTagsAudit(before), serverTagsAudit(&after))
	return nil
}

// serverTagsAudit is a server's tags as the audit log shows them.
func serverTagsAudit(v *store.Server) any {
	return map[string]any{"id": v.ID, "tags": v.Tags}
}
