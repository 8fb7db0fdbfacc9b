package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/store"
)

// The charts are SVG drawn here, in the page: no script, and no style
// attribute (the Content-Security-Policy allows neither); their look is
// the stylesheet's, by class. Every text in them is a number, a date or
// escaped.

// Chart sizes, in the SVG's own units; the stylesheet scales them.
const (
	chartW, chartH   = 640, 200
	chartL, chartR   = 44, 12 // margins for the axis labels
	chartT, chartB   = 14, 30
	coverageH        = 150
	coverageBarsGap  = 2
	warningsH        = 70
	coverageMaxDays  = 30
	rolloutMinWindow = time.Minute
)

// svgText escapes s for an SVG text node.
func svgText(s string) string { return template.HTMLEscapeString(s) }

// CoverageChart is the fleet's patch coverage over the days up to today
// (UTC): one bar a day, stacked by state (up to date, out of date,
// unsupported, inactive), as tall as the day's servers against the
// busiest day; a day without a count is an empty slot.
func CoverageChart(days []store.CoverageDay, today time.Time, n int) template.HTML {
	byDay := map[string]store.CoverageDay{}
	most := 1
	for _, d := range days {
		byDay[d.Day] = d
		most = max(most, d.Total)
	}
	plotW := chartW - chartL - chartR
	plotH := coverageH - chartT - chartB
	slot := float64(plotW) / float64(n)
	var b strings.Builder
	last := byDay[today.UTC().Format(time.DateOnly)]
	fmt.Fprintf(&b, `<svg class="chart coverage" viewBox="0 0 %d %d" role="img" aria-labelledby="coverage-title">`, chartW, coverageH)
	fmt.Fprintf(&b, `<title id="coverage-title">Patch coverage, last %d days: today %d of %d servers up to date</title>`, n, last.UpToDate, last.Total)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartL, chartT+plotH, chartL+plotW, chartT+plotH)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%d</text>`, chartL-6, chartT+8, most)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">0</text>`, chartL-6, chartT+plotH)
	for i := range n {
		day := today.UTC().AddDate(0, 0, i-(n-1))
		key := day.Format(time.DateOnly)
		x := float64(chartL) + float64(i)*slot + coverageBarsGap/2
		w := slot - coverageBarsGap
		d, ok := byDay[key]
		if !ok {
			fmt.Fprintf(&b, `<rect class="cov-none" x="%.1f" y="%d" width="%.1f" height="%d"><title>%s: not counted</title></rect>`,
				x, chartT+plotH-2, w, 2, key)
		} else {
			y := float64(chartT + plotH)
			fmt.Fprintf(&b, `<g><title>%s: %d of %d servers up to date, %d out of date, %d unsupported, %d inactive</title>`,
				key, d.UpToDate, d.Total, d.OutOfDate, d.Unsupported, d.Inactive)
			for _, part := range []struct {
				class string
				n     int
			}{{"cov-up", d.UpToDate}, {"cov-out", d.OutOfDate}, {"cov-uns", d.Unsupported}, {"cov-ina", d.Inactive}} {
				if part.n == 0 {
					continue
				}
				h := float64(part.n) / float64(most) * float64(plotH)
				y -= h
				fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, part.class, x, y, w, h)
			}
			b.WriteString(`</g>`)
		}
		if i%7 == (n-1)%7 {
			fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+w/2, chartT+plotH+16, day.Format("01-02"))
		}
	}
	legend(&b, coverageH-4, []legendItem{{"cov-up", "up to date"}, {"cov-out", "out of date"}, {"cov-uns", "unsupported"}, {"cov-ina", "inactive"}})
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

type legendItem struct{ class, text string }

// legend writes a row of swatches and their names at the foot of a chart.
func legend(b *strings.Builder, y int, items []legendItem) {
	x := chartL + 190
	for _, it := range items {
		fmt.Fprintf(b, `<rect class="%s" x="%d" y="%d" width="9" height="9"/><text class="label" x="%d" y="%d">%s</text>`,
			it.class, x, y-8, x+13, y, svgText(it.text))
		x += 14 + 7*len(it.text) + 10
	}
}

// RolloutChart is a rollout over time, from its start to now: how many of
// its servers had the patchset's level (a line) against how many its
// waves so far held (a dashed line), the waves' starts and a halt or a
// roll back marked; below, the new kernel warnings of each wave.
func RolloutChart(st *core.RolloutStatus, samples []core.Sample, now time.Time) template.HTML {
	if st.Started.IsZero() || len(samples) == 0 {
		return ""
	}
	start, end := st.Started, now
	if last := samples[len(samples)-1].At; last.After(end) {
		end = last
	}
	if end.Sub(start) < rolloutMinWindow {
		end = start.Add(rolloutMinWindow)
	}
	most := 1
	for _, s := range samples {
		most = max(most, s.Servers)
	}
	plotW := float64(chartW - chartL - chartR)
	plotH := float64(chartH - chartT - chartB)
	x := func(t time.Time) float64 {
		return float64(chartL) + float64(t.Sub(start))/float64(end.Sub(start))*plotW
	}
	y := func(n int) float64 { return float64(chartT) + plotH - float64(n)/float64(most)*plotH }
	var b strings.Builder
	last := samples[len(samples)-1]
	id := fmt.Sprintf("rollout-%d-title", st.ID)
	fmt.Fprintf(&b, `<svg class="chart rollout" viewBox="0 0 %d %d" role="img" aria-labelledby="%s">`, chartW, chartH+warningsH, id)
	fmt.Fprintf(&b, `<title id="%s">Rollout of %s: %d of %d servers have the level; %s at wave %d</title>`,
		id, svgText(st.Patchset), last.Applied, last.Servers, svgText(st.State), st.Wave+1)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%.1f" x2="%.1f" y2="%.1f"/>`, chartL, float64(chartT)+plotH, float64(chartL)+plotW, float64(chartT)+plotH)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%d</text>`, chartL-6, chartT+8, most)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%.1f" text-anchor="end">0</text>`, chartL-6, float64(chartT)+plotH)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%.1f">%s</text>`, chartL, float64(chartT)+plotH+16, start.UTC().Format("01-02 15:04"))
	fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, float64(chartL)+plotW, float64(chartT)+plotH+16, end.UTC().Format("01-02 15:04"))

	// The waves' starts and the state changes, as marks across the plot.
	prev := samples[0]
	for _, s := range samples[1:] {
		switch {
		case s.Wave != prev.Wave:
			fmt.Fprintf(&b, `<line class="mark" x1="%.1f" y1="%d" x2="%.1f" y2="%.1f"/><text class="label" x="%.1f" y="%d">wave %d</text>`,
				x(s.At), chartT, x(s.At), float64(chartT)+plotH, x(s.At)+3, chartT+8, s.Wave+1)
		case s.State != prev.State && (s.State == "halted" || s.State == "rolled-back"):
			fmt.Fprintf(&b, `<line class="mark-bad" x1="%.1f" y1="%d" x2="%.1f" y2="%.1f"/><text class="label bad" x="%.1f" y="%d">%s</text>`,
				x(s.At), chartT, x(s.At), float64(chartT)+plotH, x(s.At)+3, chartT+8, svgText(s.State))
		}
		prev = s
	}
	step := func(class string, value func(core.Sample) int) {
		var pts []string
		for i, s := range samples {
			if i > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.At), y(value(samples[i-1]))))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.At), y(value(s))))
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(end), y(value(last))))
		fmt.Fprintf(&b, `<polyline class="%s" points="%s"/>`, class, strings.Join(pts, " "))
	}
	step("series-waves", func(s core.Sample) int { return s.Admitted })
	step("series-level", func(s core.Sample) int { return s.Applied })
	legend(&b, chartH-4, []legendItem{{"swatch-level", "servers with the level"}, {"swatch-waves", "servers in the waves so far"}})

	// The warnings of each wave, now.
	top := chartH + 6
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">new kernel warnings by wave</text>`, chartL, top+10)
	worst := int64(1)
	for _, w := range last.Warnings {
		worst = max(worst, w)
	}
	slot := plotW / float64(max(len(last.Warnings), 1))
	barH := float64(warningsH - 34)
	for i, w := range last.Warnings {
		h := float64(w) / float64(worst) * barH
		bx := float64(chartL) + float64(i)*slot
		class := "warn-none"
		if w > 0 {
			class = "warn-some"
		}
		fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>wave %d: %d new kernel warnings</title></rect>`,
			class, bx+4, float64(top+16)+barH-max(h, 1), slot-8, max(h, 1), i+1, w)
		fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%d" text-anchor="middle">wave %d: %d</text>`, bx+slot/2, chartH+warningsH-2, i+1, w)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
