package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"github.com/kcare/kcare/internal/apitype"
	"io"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kcare/kcare/internal/portal/httperr"
)

// Version is eportal's version, for kcare_build_info.
var Version = "0.1.0"

// metrics are the portal's Prometheus metrics. Label values are bounded:
// routes, status codes, states, feeds and activation keys by key_id and
// note — never a server, never a key itself.
type metrics struct {
	reg      *prometheus.Registry
	handler  http.Handler // serves reg
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kcare_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kcare_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kcare_build_info",
		Help: "eportal's version and Go version; always 1.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(Version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.requests, m.latency, info, &fleetCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// instrument counts and times a route's requests.
func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ServeContent and friends reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom hands r to the real writer's ReadFrom, which sends a file
// with sendfile(2).
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{w}, r)
}

// serveMetrics is GET /metrics; its route's guard has run metricsAuth.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metrics.handler.ServeHTTP(w, r)
	return nil
}

// metricsAuth lets a scrape through when it comes from an allowed network
// (Config.MetricsAllow) and carries the bearer token (Config.MetricsToken);
// either check is off when its setting is empty.
func (s *Server) metricsAuth(r *http.Request) error {
	if len(s.cfg.MetricsAllow) > 0 {
		ip, err := netip.ParseAddr(httperr.RemoteIP(r))
		allowed := false
		for _, p := range s.cfg.MetricsAllow {
			allowed = allowed || (err == nil && p.Contains(ip.Unmap()))
		}
		if !allowed {
			return errorf(http.StatusForbidden, "metrics are not served to this address")
		}
	}
	if s.cfg.MetricsToken != "" {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Compare digests so that the comparison takes the same time
		// whatever the length of what was sent.
		got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.MetricsToken))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return &httperr.Error{Code: http.StatusUnauthorized, Msg: "metrics need a bearer token", Header: http.Header{
				"Www-Authenticate": {`Bearer realm="eportal metrics"`}}}
		}
	}
	return nil
}

// KeyID names an activation key where the key itself must not appear (the
// metrics' key_id label): the first 12 hex digits of HMAC-SHA256 of the
// key under the portal's metrics salt. It is stable for as long as the
// salt is, and cannot be turned back into the key without the salt.
func (s *Server) KeyID(key string) string {
	if key == "" {
		return ""
	}
	m := hmac.New(sha256.New, s.cfg.MetricsSalt)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))[:12]
}

// fleetCollector reports the fleet's state at scrape time, from the store,
// cached for fleetCacheFor so frequent scrapes of a large fleet stay cheap.
type fleetCollector struct {
	s *Server

	mu      sync.Mutex
	at      time.Time
	metrics []prometheus.Metric
}

const fleetCacheFor = 15 * time.Second

var (
	serversDesc = prometheus.NewDesc("kcare_servers",
		"Servers by patch state, activation key (key_id, a salted hash, and its note) and feed; IP-licensed servers have key_id \"\".",
		[]string{"state", "key_id", "note", "feed"}, nil)
	patchsetsDesc = prometheus.NewDesc("kcare_patchsets",
		"Patchsets by feed and state (enabled or disabled).", []string{"feed", "state"}, nil)
	levelsDesc = prometheus.NewDesc("kcare_patch_levels",
		"Published patch levels.", nil, nil)
	rolloutsDesc = prometheus.NewDesc("kcare_rollouts",
		"Rollouts by feed and state (running, paused, halted, rolled-back, done). Alert on halted or rolled-back above 0: the portal stopped a rollout by itself.",
		[]string{"feed", "state"}, nil)
	rolloutWaveDesc = prometheus.NewDesc("kcare_rollout_wave",
		"The wave (from 1) each rollout not done is at, by feed, patchset and state.", []string{"feed", "patchset", "state"}, nil)
	upDesc = prometheus.NewDesc("kcare_fleet_scrape_success",
		"Whether reading the fleet's state from the store worked (1) or not (0).", nil, nil)
)

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- serversDesc
	ch <- patchsetsDesc
	ch <- levelsDesc
	ch <- rolloutsDesc
	ch <- rolloutWaveDesc
	ch <- upDesc
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.metrics == nil || time.Since(c.at) > fleetCacheFor {
		ms, err := c.s.fleetMetrics(context.Background())
		if err != nil {
			c.s.cfg.Log.Error("metrics: read fleet", "error", err)
			ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
			return
		}
		c.metrics, c.at = ms, time.Now()
	}
	for _, m := range c.metrics {
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
}

func (s *Server) fleetMetrics(ctx context.Context) ([]prometheus.Metric, error) {
	counts, err := s.core.FleetCounts(ctx)
	if err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	for _, c := range counts {
		out = append(out, prometheus.MustNewConstMetric(serversDesc, prometheus.GaugeValue, float64(c.N), string(c.State), s.KeyID(c.Key), c.Note, c.Feed))
	}
	feeds, err := s.core.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range feeds {
		ps, err := s.core.FeedPatchsets(ctx, f.Name)
		if err != nil {
			return nil, err
		}
		on, off := 0, 0
		for _, p := range ps {
			if p.Enabled {
				on++
			} else {
				off++
			}
		}
		out = append(out,
			prometheus.MustNewConstMetric(patchsetsDesc, prometheus.GaugeValue, float64(on), f.Name, "enabled"),
			prometheus.MustNewConstMetric(patchsetsDesc, prometheus.GaugeValue, float64(off), f.Name, "disabled"))
	}
	sets, err := s.core.Patchsets(ctx)
	if err != nil {
		return nil, err
	}
	levels := 0
	for _, p := range sets {
		levels += p.Levels
	}
	out = append(out, prometheus.MustNewConstMetric(levelsDesc, prometheus.GaugeValue, float64(levels)))
	rs, err := s.core.Rollouts(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, f := range feeds {
		n := map[apitype.RolloutState]int{}
		for _, r := range rs {
			if r.Feed != f.Name {
				continue
			}
			n[apitype.RolloutState(r.State)]++
			if r.State != string(apitype.RolloutDone) {
				out = append(out, prometheus.MustNewConstMetric(rolloutWaveDesc, prometheus.GaugeValue, float64(r.Wave+1), f.Name, r.Patchset, r.State))
			}
		}
		for _, st := range apitype.RolloutStates {
			out = append(out, prometheus.MustNewConstMetric(rolloutsDesc, prometheus.GaugeValue, float64(n[st]), f.Name, string(st)))
		}
	}
	return out, nil
}
