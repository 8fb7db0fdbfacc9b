package core

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
)

// ErrBadToken is an API token the portal does not know.
var ErrBadToken = errors.New("bad API key")

// ErrNotAdmin is an operator without the admin role asking for a change.
var ErrNotAdmin = errors.New("admin role required")

// AddUser adds an operator with the password's hash (made by
// auth.HashPassword, which the caller bounds: it costs 64 MiB).
func (c *Core) AddUser(ctx context.Context, a Actor, name, passwordHash string, role apitype.Role) error {
	if !role.Valid() {
		return invalid("role %q: admin or readonly", role)
	}
	if err := c.st.AddUser(ctx, &store.User{Name: name, PasswordHash: passwordHash, Role: role, Created: c.Now()}); err != nil {
		return err
	}
	c.audit(ctx, a, "user.add", name, "role="+string(role), nil, map[string]any{"name": name, "role": role})
	return nil
}

// DeleteUser deletes an operator and their API tokens; an operator
// cannot delete themselves (ErrSelf).
func (c *Core) DeleteUser(ctx context.Context, a Actor, name string) error {
	if name == a.Name {
		return ErrSelf
	}
	before, err := c.st.User(ctx, name)
	if err != nil {
		return err
	}
	if err := c.st.DeleteUser(ctx, name); err != nil {
		return err
	}
	c.audit(ctx, a, "user.delete", name, "", map[string]any{"name": name, "role": before.Role}, nil)
	return nil
}

// User returns an operator.
func (c *Core) User(ctx context.Context, name string) (*store.User, error) {
	return c.st.User(ctx, name)
}

// Users lists the operators by name.
func (c *Core) Users(ctx context.Context) ([]store.User, error) { return c.st.Users(ctx) }

// tokenAudit is an API token as the audit log shows it: never its secret.
func tokenAudit(t *store.Token) any {
	return map[string]any{"id": t.ID, "user": t.User, "note": t.Note}
}

// AddToken makes an API token for user and returns its secret, which is
// shown once: only its hash is kept.
func (c *Core) AddToken(ctx context.Context, a Actor, user, note string) (*store.Token, string, error) {
	if _, err := c.st.User(ctx, user); err != nil {
		return nil, "", fmt.Errorf("user %s: %w", user, err)
	}
	secret := auth.NewSecret()
	t := &store.Token{Hash: auth.HashSecret(secret), User: user, Note: note, Created: c.Now()}
	if err := c.st.AddToken(ctx, t); err != nil {
		return nil, "", err
	}
	c.audit(ctx, a, "token.add", strconv.FormatInt(t.ID, 10), "user="+user, nil, tokenAudit(t))
	return t, secret, nil
}

// DeleteToken deletes an API token.
func (c *Core) DeleteToken(ctx context.Context, a Actor, id int64) error {
	toks, err := c.st.Tokens(ctx, "")
	if err != nil {
		return err
	}
	var before *store.Token
	for i := range toks {
		if toks[i].ID == id {
			before = &toks[i]
		}
	}
	if before == nil {
		return fmt.Errorf("API key %d: %w", id, store.ErrNotFound)
	}
	if err := c.st.DeleteToken(ctx, id); err != nil {
		return err
	}
	c.audit(ctx, a, "token.delete", strconv.FormatInt(id, 10), "user="+before.User, tokenAudit(before), nil)
	return nil
}

// Tokens lists the API tokens of user ("" for all), by id.
func (c *Core) Tokens(ctx context.Context, user string) ([]store.Token, error) {
	return c.st.Tokens(ctx, user)
}

// TokenUser returns the operator an API token (X-Api-Key) acts as; with
// admin, only an admin (ErrNotAdmin). An unknown token is ErrBadToken.
func (c *Core) TokenUser(ctx context.Context, secret string, admin bool) (*store.User, error) {
	t, err := c.st.TokenByHash(ctx, auth.HashSecret(secret))
	if isNotFound(err) {
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, err
	}
	u, err := c.st.User(ctx, t.User)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if admin && u.Role != apitype.RoleAdmin {
		return nil, ErrNotAdmin
	}
	return u, nil
}

// resellers is the store's resellers.
func (c *Core) resellers() (store.ResellerStore, error) { return c.st, nil }

// resellerAudit is a reseller as the audit log shows it: never its token.
func resellerAudit(r *store.Reseller) any {
	if r == nil {
		return nil
	}
	cidrs := r.CIDRs
	if cidrs == nil {
		cidrs = []string{}
	}
	return map[string]any{"login": r.Login, "cidrs": cidrs}
}

// AddReseller adds a reseller with its IP ranges.
func (c *Core) AddReseller(ctx context.Context, a Actor, r *store.Reseller) error {
	rs, err := c.resellers()
	if err != nil {
		return err
	}
	r.Created = c.Now()
	if err := rs.AddReseller(ctx, r); err != nil {
		return err
	}
	c.audit(ctx, a, "reseller.add", r.Login, "", nil, resellerAudit(r))
	return nil
}

// NewResellerToken makes a reseller's API token, replacing any before,
// and returns it: only its hash is kept.
func (c *Core) NewResellerToken(ctx context.Context, a Actor, login string) (string, error) {
	rs, err := c.resellers()
	if err != nil {
		return "", err
	}
	tok := auth.NewSecret()
	if err := rs.SetResellerToken(ctx, login, auth.HashSecret(tok)); err != nil {
		return "", fmt.Errorf("reseller %s: %w", login, err)
	}
	c.audit(ctx, a, "reseller.token", login, "new API token", nil, nil)
	return tok, nil
}

// DeleteReseller deletes a reseller.
func (c *Core) DeleteReseller(ctx context.Context, a Actor, login string) error {
	rs, err := c.resellers()
	if err != nil {
		return err
	}
	before, err := rs.Reseller(ctx, login)
	if err != nil {
		return err
	}
	if err := rs.DeleteReseller(ctx, login); err != nil {
		return err
	}
	c.audit(ctx, a, "reseller.delete", login, "", resellerAudit(before), nil)
	return nil
}

// Resellers lists the resellers by login.
func (c *Core) Resellers(ctx context.Context) ([]store.Reseller, error) {
	rs, err := c.resellers()
	if err != nil {
		return nil, err
	}
	return rs.Resellers(ctx)
}

// ipLicenseAudit is an IP license as the audit log shows it.
func ipLicenseAudit(l *store.IPLicense) any {
	if l == nil {
		return nil
	}
	return map[string]any{"cidr": l.CIDR, "feed": l.Feed, "note": l.Note}
}

// AddIPLicense adds an IP license (its CIDR kept in canonical form);
// feed "" is main.
func (c *Core) AddIPLicense(ctx context.Context, a Actor, l *store.IPLicense) error {
	if l.Feed == "" {
		l.Feed = apitype.MainFeed
	}
	l.Created = c.Now()
	if err := c.st.AddIPLicense(ctx, l); err != nil {
		return err
	}
	c.audit(ctx, a, "ip.add", l.CIDR, "feed="+l.Feed, nil, ipLicenseAudit(l))
	return nil
}

// DeleteIPLicense deletes the IP license of cidr.
func (c *Core) DeleteIPLicense(ctx context.Context, a Actor, cidr string) error {
	if p, err := netip.ParsePrefix(cidr); err == nil {
		cidr = p.Masked().String()
	} else if ip, err := netip.ParseAddr(cidr); err == nil {
		cidr = netip.PrefixFrom(ip, ip.BitLen()).String()
	}
	lics, err := c.st.IPLicenses(ctx)
	if err != nil {
		return err
	}
	var before *store.IPLicense
	for i := range lics {
		if lics[i].CIDR == cidr {
			before = &lics[i]
		}
	}
	if err := c.st.DeleteIPLicense(ctx, cidr); err != nil {
		return err
	}
	c.audit(ctx, a, "ip.delete", cidr, "", ipLicenseAudit(before), nil)
	return nil
}

// IPLicenses lists the IP licenses in order of creation.
func (c *Core) IPLicenses(ctx context.Context) ([]store.IPLicense, error) {
	return c.st.IPLicenses(ctx)
}
