"use strict";
// One drawing function per panel kind: rows of a view query -> an ECharts option, plus the
// data it plotted (exposed in window.__facta.panels so tests can compare it with the query).

const ELLIPSE_LEGEND = {
  means: "group mean",
  r1: "radius 1: holds ≈ 39 % of a bivariate normal",
  r2: "radius 2: holds ≈ 86 % of a bivariate normal",
};

function labelOf(row, names) {
  return names.length ? names.map((n) => String(row[n])).join(" · ") : "all";
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a) < String(b) ? -1 : 1;
}

function sortBy(rows, names) {
  return rows.slice().sort((x, y) => {
    for (const n of names) {
      const c = compareValues(x[n], y[n]);
      if (c) return c;
    }
    return 0;
  });
}

function round(value) {
  if (value === null || value === undefined) return null;
  return Math.abs(value) >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
}

function dayLabel(iso) {
  // Bucket times carry the view's offset: their date and hour are local already.
  return iso.slice(11, 19) === "00:00:00" ? iso.slice(0, 10) : iso.slice(0, 16).replace("T", " ");
}

const BASE = {
  animation: false,
  grid: { left: 56, right: 24, top: 36, bottom: 40, containLabel: true },
  tooltip: { trigger: "item", confine: true },
};

function groupNames(panel) {
  return panel.group_by || [];
}

const CHARTS = {
  kpi(panel, rows) {
    const row = rows[0] || {};
    const value = row[panel.measure] === undefined ? null : row[panel.measure];
    return { option: null, plotted: { value }, text: value === null ? "–" : String(round(value)) };
  },

  bar(panel, rows) {
    const names = groupNames(panel);
    const sorted = rows
      .slice()
      .sort((a, b) => compareValues(b[panel.measure], a[panel.measure]))
      .slice(0, panel.k || 10);
    const labels = sorted.map((r) => labelOf(r, names));
    const values = sorted.map((r) => r[panel.measure]);
    return {
      plotted: { labels, values },
      option: {
        ...BASE,
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: labels, axisLabel: { interval: 0, rotate: labels.length > 8 ? 40 : 0 } },
        yAxis: { type: "value", name: panel.measure },
        series: [{ type: "bar", name: panel.measure, data: values }],
      },
    };
  },

  line(panel, rows) {
    const names = groupNames(panel);
    const sorted = sortBy(rows, names);
    const labels = sorted.map((r) => labelOf(r, names));
    const values = sorted.map((r) => r[panel.measure]);
    return {
      plotted: { labels, values },
      option: {
        ...BASE,
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: labels, name: names.join(", ") },
        yAxis: { type: "value", name: panel.measure, scale: true },
        series: [{ type: "line", name: panel.measure, data: values, connectNulls: false }],
      },
    };
  },

  series(panel, rows, context) {
    const names = groupNames(panel);
    const groups = new Map();
    for (const row of sortBy(rows, ["bucket"])) {
      if (context.from !== null && Date.parse(row.bucket) < context.from) continue;
      const label = labelOf(row, names);
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push([row.bucket, row[panel.measure]]);
    }
    const series = Array.from(groups, ([name, data]) => ({ name, data }));
    return {
      plotted: { series },
      zoom: "time",
      option: {
        ...BASE,
        tooltip: { trigger: "axis" },
        legend: names.length ? { type: "scroll", top: 0 } : undefined,
        xAxis: { type: "time" },
        yAxis: { type: "value", name: panel.measure },
        dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 4 }],
        series: series.map((s) => ({
          type: "line",
          name: s.name,
          showSymbol: false,
          data: s.data.map(([t, v]) => [Date.parse(t), v]),
        })),
      },
    };
  },

  box(panel, rows) {
    const names = groupNames(panel);
    const sorted = sortBy(rows, names).filter((r) => r.n > 0);
    const labels = sorted.map((r) => labelOf(r, names));
    const boxes = sorted.map((r) => [r.whisker_low, r.q1, r.median, r.q3, r.whisker_high]);
    return {
      plotted: { labels, boxes },
      option: boxOption(panel, labels, boxes, sorted, false),
    };
  },

  box_sequence(panel, rows, context) {
    const names = groupNames(panel);
    const sorted = sortBy(rows, ["bucket", ...names]).filter(
      (r) => r.n > 0 && (context.from === null || Date.parse(r.bucket) >= context.from),
    );
    const labels = sorted.map((r) => (names.length ? `${dayLabel(r.bucket)} ${labelOf(r, names)}` : dayLabel(r.bucket)));
    const boxes = sorted.map((r) => [r.whisker_low, r.q1, r.median, r.q3, r.whisker_high]);
    return {
      plotted: { labels, boxes, buckets: sorted.map((r) => r.bucket) },
      zoom: "category",
      option: boxOption(panel, labels, boxes, sorted, true),
    };
  },

  heatmap(panel, rows) {
    const xs = Array.from(new Set(rows.map((r) => r[panel.x]))).sort(compareValues);
    const ys = Array.from(new Set(rows.map((r) => r[panel.y]))).sort(compareValues);
    const cells = rows.map((r) => [xs.indexOf(r[panel.x]), ys.indexOf(r[panel.y]), r[panel.measure]]);
    const values = cells.map((c) => c[2]).filter((v) => v !== null);
    return {
      plotted: { x: xs, y: ys, cells },
      option: {
        ...BASE,
        grid: { ...BASE.grid, right: 80 },
        xAxis: { type: "category", data: xs.map(String), name: panel.x, splitArea: { show: true } },
        yAxis: { type: "category", data: ys.map(String), name: panel.y, splitArea: { show: true } },
        visualMap: {
          min: values.length ? Math.min(...values) : 0,
          max: values.length ? Math.max(...values) : 1,
          calculable: true,
          orient: "vertical",
          right: 0,
          top: "middle",
          itemHeight: 120,
          inRange: { color: ["#f7fbff", "#6baed6", "#08306b"] },
        },
        series: [{ type: "heatmap", name: panel.measure, data: cells.map((c) => [c[0], c[1], round(c[2])]) }],
      },
    };
  },

  ellipse(panel, rows, context) {
    const names = groupNames(panel);
    const fields = (context.view && context.view.measure_fields[panel.measure]) || ["x", "y"];
    const groups = sortBy(rows, names)
      .filter((r) => r.mean_x !== null && r.mean_y !== null)
      .map((r) => ({
        label: labelOf(r, names),
        mean: [r.mean_x, r.mean_y],
        angle: r.angle_degrees,
        r1: [r.r1_major, r.r1_minor],
        r2: [r.r2_major, r.r2_minor],
      }));
    const series = [
      {
        type: "scatter",
        name: ELLIPSE_LEGEND.means,
        data: groups.map((g) => [g.mean[0], g.mean[1], g.label]),
        label: { show: true, formatter: (p) => p.value[2], position: "right", fontSize: 10 },
        symbolSize: 7,
        z: 3,
      },
    ];
    groups.forEach((g, index) => {
      const color = PALETTE[index % PALETTE.length];
      for (const radius of ["r1", "r2"]) {
        series.push({
          type: "line",
          name: ELLIPSE_LEGEND[radius],
          data: ellipsePoints(g.mean, g[radius], g.angle),
          showSymbol: false,
          silent: true,
          lineStyle: { color, width: 1, type: radius === "r1" ? "solid" : "dashed" },
          itemStyle: { color: "#555" },
        });
      }
    });
    const bounds = ellipseBounds(groups);
    return {
      plotted: { groups },
      option: {
        ...BASE,
        legend: { top: 0, data: Object.values(ELLIPSE_LEGEND) },
        grid: { ...BASE.grid, top: 70 },
        tooltip: { trigger: "item", formatter: (p) => (p.seriesType === "scatter" ? `${p.value[2]}: mean (${round(p.value[0])}, ${round(p.value[1])})` : p.seriesName) },
        xAxis: { type: "value", name: fields[0], scale: true, nameLocation: "middle", nameGap: 26, ...bounds.x },
        yAxis: { type: "value", name: fields[1], scale: true, nameLocation: "middle", nameGap: 40, ...bounds.y },
        series,
      },
    };
  },
};

const PALETTE = ["#5470c6", "#91cc75", "#fac858", "#ee6666", "#73c0de", "#3ba272", "#fc8452", "#9a60b4", "#ea7ccc", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"];

function ellipsePoints(mean, radii, angleDegrees) {
  const [major, minor] = radii;
  if (major === null || minor === null) return [];
  const a = (angleDegrees * Math.PI) / 180;
  const points = [];
  for (let i = 0; i <= 72; i += 1) {
    const t = (2 * Math.PI * i) / 72;
    const u = major * Math.cos(t);
    const v = minor * Math.sin(t);
    points.push([mean[0] + u * Math.cos(a) - v * Math.sin(a), mean[1] + u * Math.sin(a) + v * Math.cos(a)]);
  }
  return points;
}

function ellipseBounds(groups) {
  // Small groups can have huge ellipses that would squash the rest into a dot: fit the axes to
  // every mean and to the radius-2 ellipses of the 80 % of groups with the smallest ones (the
  // others run off the edge, clipped).
  if (groups.length < 3) return { x: {}, y: {} };
  const sized = groups.filter((g) => g.r2[0] !== null).sort((a, b) => a.r2[0] - b.r2[0]);
  const kept = sized.slice(0, Math.max(1, Math.ceil(sized.length * 0.8)));
  const points = kept.flatMap((g) => ellipsePoints(g.mean, g.r2, g.angle)).concat(groups.map((g) => g.mean));
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const pad = (lo, hi) => {
    const room = (hi - lo) * 0.05 || 1;
    const step = 10 ** Math.floor(Math.log10((hi - lo + 2 * room) / 4)); // round to tick-like ends
    return { min: Math.floor((lo - room) / step) * step, max: Math.ceil((hi + room) / step) * step };
  };
  return { x: pad(Math.min(...xs), Math.max(...xs)), y: pad(Math.min(...ys), Math.max(...ys)) };
}

function boxOption(panel, labels, boxes, rows, zoomable) {
  return {
    ...BASE,
    tooltip: {
      trigger: "item",
      formatter: (p) => {
        const r = rows[p.dataIndex];
        if (!r) return "";
        return `${labels[p.dataIndex]}<br>n ${r.n}<br>max ${round(r.max)}<br>upper whisker ${round(r.whisker_high)}<br>q3 ${round(r.q3)}<br>median ${round(r.median)}<br>q1 ${round(r.q1)}<br>lower whisker ${round(r.whisker_low)}<br>min ${round(r.min)}`;
      },
    },
    xAxis: { type: "category", data: labels, axisLabel: { rotate: labels.length > 12 ? 40 : 0 } },
    yAxis: { type: "value", name: panel.measure, scale: true },
    dataZoom: zoomable ? [{ type: "inside" }, { type: "slider", height: 18, bottom: 4 }] : undefined,
    series: [{ type: "boxplot", name: panel.measure, data: boxes }],
  };
}

window.FactaCharts = { CHARTS, ELLIPSE_LEGEND };
