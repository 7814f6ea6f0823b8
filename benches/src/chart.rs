//! The ratio tables of `RESULTS.md` as one SVG chart (`benches/results.svg`,
//! shown in the README).
//!
//! One horizontal bar per case and peer, grouped under a band per goal. A
//! bar runs on a log axis from parity (1.0, the dark vertical line) to the
//! ratio peer / ours: right of parity (green) bsdalloc is faster, left of it
//! (red) the peer is. Grey bars are our own variants and reference figures
//! ([`is_reference`]), not other allocators. Cases without a peer (no
//! ratio) are left out.
//!
//! Built with plotters' SVG backend alone: it lays text out by an estimate
//! of its width, so no fonts or system libraries are needed, and the
//! viewer's sans-serif draws it.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{GOALS, Row};

/// Function ids, besides those starting `ours-`, that are not another
/// allocator but bsdalloc in another configuration (`pool_cache-G1`,
/// `kmem-K1`) or a reference figure (`construct-alone`: the constructor
/// with no allocation at all).
pub const REFERENCES: &[&str] = &["pool_cache-G1", "kmem-K1", "construct-alone"];

/// Whether `peer` is one of ours or a reference figure rather than a peer
/// allocator: the chart draws it grey.
pub fn is_reference(peer: &str) -> bool {
    peer.starts_with("ours-") || REFERENCES.contains(&peer)
}

/// The chart's width in pixels: about a README's column (GitHub scales a
/// wider image down).
pub const WIDTH: u32 = 960;

const MARGIN: i32 = 14;
/// Height of one bar's line (px).
const LINE: f64 = 17.0;
/// Font sizes in px as drawn (the SVG backend writes size / 1.24).
const TITLE_PX: f64 = 19.0;
const TEXT_PX: f64 = 13.0;
const SMALL_PX: f64 = 12.0;

const FASTER: RGBColor = RGBColor(0x2e, 0x8b, 0x57);
const SLOWER: RGBColor = RGBColor(0xc8, 0x3e, 0x3e);
const REFERENCE: RGBColor = RGBColor(0x9a, 0xa0, 0xa6);
const BAND: RGBColor = RGBColor(0xe9, 0xee, 0xf4);
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const GUIDE: RGBColor = RGBColor(0xf1, 0xf1, 0xf1);
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x55, 0x5b, 0x61);

fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * 1.24).into_font()
}

fn style(px: f64, color: RGBColor, h: HPos) -> TextStyle<'static> {
    font(px).color(&color).pos(Pos::new(h, VPos::Center))
}

fn bold(px: f64, color: RGBColor, h: HPos) -> TextStyle<'static> {
    font(px)
        .style(FontStyle::Bold)
        .color(&color)
        .pos(Pos::new(h, VPos::Center))
}

/// A generous estimate of a text's width in px (wider than plotters' own,
/// so that labels laid out by it do not collide in a real sans-serif).
fn text_w(s: &str, px: f64) -> i32 {
    (s.chars().count() as f64 * px * 0.6).ceil() as i32
}

/// `s` cut with an ellipsis to fit `max` px.
fn fit(s: &str, px: f64, max: i32) -> String {
    if text_w(s, px) <= max {
        return s.to_string();
    }
    let keep = ((max as f64 / (px * 0.6)) as usize).saturating_sub(1);
    let mut t: String = s.chars().take(keep).collect();
    t.push('…');
    t
}

/// One line of the chart, top to bottom.
enum Line<'a> {
    /// A goal's band: id and what it measures.
    Goal(&'a str),
    /// A bar: the case's label on the first bar of each case.
    Bar {
        case: Option<&'a str>,
        peer: &'a str,
        ratio: f64,
    },
    /// Space between two cases of one goal (a thin rule across).
    Gap,
}

impl Line<'_> {
    /// Height in units of [`LINE`].
    fn units(&self) -> f64 {
        match self {
            Line::Goal(_) => 1.45,
            Line::Bar { .. } => 1.0,
            Line::Gap => 0.4,
        }
    }
}

fn lines(rows: &[Row]) -> Vec<Line<'_>> {
    let mut out = vec![];
    let mut goal = "";
    let mut case = "";
    for r in rows {
        let (Some(peer), Some(ratio)) = (r.peer.as_deref(), r.ratio()) else {
            continue;
        };
        if !(ratio.is_finite() && ratio > 0.0) {
            continue;
        }
        let mut first = false;
        if r.goal() != goal {
            goal = r.goal();
            out.push(Line::Goal(goal));
            first = true;
        } else if r.case != case {
            out.push(Line::Gap);
            first = true;
        }
        case = &r.case;
        let label = case.split_once('/').map_or(case, |(_, rest)| rest);
        out.push(Line::Bar {
            case: first.then_some(label),
            peer,
            ratio,
        });
    }
    out
}

/// A ratio as the tables print it, with the times sign.
fn ratio_label(r: f64) -> String {
    if r >= 9.995 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// An axis tick (a power of two) as a fraction or a whole number.
fn tick_label(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.0}")
    } else {
        format!("1/{:.0}", 1.0 / t)
    }
}

/// Draws `rows` (as the `report` binary builds them) as an SVG document.
/// `subtitle` says where and when (machine, date). Errors are plotters'
/// drawing errors, in words.
pub fn svg(rows: &[Row], subtitle: &str) -> Result<String, String> {
    let lines = lines(rows);
    let units: f64 = lines.iter().map(Line::units).sum::<f64>().max(1.0);
    let bars = lines.iter().filter_map(|l| match l {
        Line::Bar { ratio, .. } => Some(*ratio),
        _ => None,
    });
    let (min, max) = bars.fold((1.0f64, 1.0f64), |(a, b), r| (a.min(r), b.max(r)));
    // Powers of two around the data, room for a value label beyond the
    // longest bars; at least 1/2..2, at most 2^-10..2^10.
    let lo_exp = ((min / 1.5).log2().floor() as i32).clamp(-10, -1);
    let hi_exp = ((max * 1.5).log2().ceil() as i32).clamp(1, 10);
    let (lo, hi) = (2f64.powi(lo_exp), 2f64.powi(hi_exp));
    let ticks: Vec<f64> = (lo_exp..=hi_exp).map(|e| 2f64.powi(e)).collect();

    // Left: the case column, then the peer column (right-aligned).
    let case_w = lines
        .iter()
        .filter_map(|l| match l {
            Line::Bar { case: Some(c), .. } => Some(text_w(c, TEXT_PX)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        .clamp(60, 250);
    let peer_w = lines
        .iter()
        .filter_map(|l| match l {
            Line::Bar { peer, .. } => Some(text_w(peer, TEXT_PX)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        .clamp(60, 170);
    let label_area = case_w + 12 + peer_w + 8;

    let head = 112; // title, subtitle, legend, direction notes
    let top_axis = 22;
    let bottom_axis = 46;
    let plot_h = (units * LINE).ceil() as i32;
    let height = (head + top_axis + plot_h + bottom_axis + MARGIN) as u32;

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        draw(
            &root,
            &lines,
            subtitle,
            Layout {
                units,
                lo,
                hi,
                ticks,
                case_w,
                label_area,
                head,
                top_axis,
                bottom_axis,
            },
        )
        .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

struct Layout {
    units: f64,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    case_w: i32,
    label_area: i32,
    head: i32,
    top_axis: i32,
    bottom_axis: i32,
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    lines: &[Line<'_>],
    subtitle: &str,
    l: Layout,
) -> DrawResult {
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        "bsdalloc against its peers: time ratio peer / bsdalloc",
        (MARGIN, MARGIN + 10),
        bold(TITLE_PX, INK, HPos::Left),
    ))?;
    root.draw(&Text::new(
        format!(
            "{subtitle} · criterion means, peers in the same binary and run · details in RESULTS.md"
        ),
        (MARGIN, MARGIN + 36),
        style(SMALL_PX, MUTED, HPos::Left),
    ))?;
    // Legend.
    let mut x = MARGIN;
    let y = MARGIN + 62;
    for (color, what) in [
        (FASTER, "bsdalloc faster (ratio > 1)"),
        (SLOWER, "peer faster (ratio < 1)"),
        (
            REFERENCE,
            "our own variant or a reference figure, not a peer",
        ),
    ] {
        root.draw(&Rectangle::new(
            [(x, y - 5), (x + 14, y + 5)],
            color.filled(),
        ))?;
        root.draw(&Text::new(
            what,
            (x + 20, y),
            style(TEXT_PX, INK, HPos::Left),
        ))?;
        x += 20 + text_w(what, TEXT_PX) + 18;
    }

    let area = root.margin(l.head, MARGIN, MARGIN, MARGIN);
    let mut chart = ChartBuilder::on(&area)
        .x_label_area_size(l.bottom_axis)
        .top_x_label_area_size(l.top_axis)
        .y_label_area_size(l.label_area)
        .build_cartesian_2d(
            (l.lo..l.hi).log_scale().with_key_points(l.ticks.clone()),
            0.0..l.units,
        )?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|t| tick_label(*t))
        .x_label_style(style(TEXT_PX, MUTED, HPos::Center).pos(Pos::new(HPos::Center, VPos::Top)))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED)
        .draw()?;

    let px = |x: f64, y: f64| chart.backend_coord(&(x, y));
    let (plot_left, plot_top) = px(l.lo, l.units);
    let (plot_right, plot_bottom) = px(l.hi, 0.0);
    let (parity, _) = px(1.0, 0.0);

    // Which side is which, above the plot, and what the axis is, below.
    let note_y = l.head - 10;
    root.draw(&Text::new(
        "parity",
        (parity, note_y),
        bold(TEXT_PX, INK, HPos::Center),
    ))?;
    let half = text_w("parity", TEXT_PX) / 2 + 10;
    root.draw(&Text::new(
        "◀ peer faster",
        (parity - half, note_y),
        bold(TEXT_PX, SLOWER, HPos::Right),
    ))?;
    root.draw(&Text::new(
        "bsdalloc faster ▶",
        (parity + half, note_y),
        bold(TEXT_PX, FASTER, HPos::Left),
    ))?;
    root.draw(&Text::new(
        "time ratio peer / bsdalloc (log scale)",
        (
            (plot_left + plot_right) / 2,
            plot_bottom + l.bottom_axis - 12,
        ),
        style(TEXT_PX, INK, HPos::Center),
    ))?;

    let mut at = 0.0; // units from the top
    // Parity runs down each goal's bars, not through the goal bands.
    let mut parity_from = plot_top;
    let mut parity_lines = vec![];
    for line in lines {
        let h = line.units();
        let (_, y0) = px(1.0, l.units - at);
        let (_, y1) = px(1.0, l.units - at - h);
        let mid = (y0 + y1) / 2;
        match line {
            Line::Goal(goal) => {
                parity_lines.push((parity_from, y0 + 3));
                parity_from = y1 - 1;
                root.draw(&Rectangle::new(
                    [(MARGIN, y0 + 3), (plot_right, y1 - 1)],
                    BAND.filled(),
                ))?;
                let what = GOALS
                    .iter()
                    .find(|g| g.case == *goal)
                    .map_or("", |g| g.what);
                let id_w = text_w(goal, TEXT_PX + 1.0) + 10;
                root.draw(&Text::new(
                    goal.to_string(),
                    (MARGIN + 6, mid + 1),
                    bold(TEXT_PX + 1.0, INK, HPos::Left),
                ))?;
                root.draw(&Text::new(
                    fit(what, TEXT_PX, plot_right - MARGIN - id_w - 12),
                    (MARGIN + 6 + id_w, mid + 1),
                    style(TEXT_PX, MUTED, HPos::Left),
                ))?;
            }
            Line::Gap => {
                root.draw(&PathElement::new(
                    vec![(MARGIN, mid), (plot_right, mid)],
                    GRID.stroke_width(1),
                ))?;
            }
            Line::Bar { case, peer, ratio } => {
                let color = if is_reference(peer) {
                    REFERENCE
                } else if *ratio >= 1.0 {
                    FASTER
                } else {
                    SLOWER
                };
                let r = ratio.clamp(l.lo, l.hi);
                let y = l.units - at - h / 2.0;
                // A faint guide from the peer's name across the plot.
                root.draw(&PathElement::new(
                    vec![(plot_left, mid), (plot_right, mid)],
                    GUIDE.stroke_width(1),
                ))?;
                root.draw(&Rectangle::new(
                    [px(1.0, y + 0.34), px(r, y - 0.34)],
                    color.filled(),
                ))?;
                if let Some(case) = case {
                    // Its column, or up to this bar's peer name where that
                    // is short.
                    let room = plot_left - 8 - text_w(peer, TEXT_PX) - 14 - (MARGIN + 6);
                    root.draw(&Text::new(
                        fit(case, TEXT_PX, room.max(l.case_w)),
                        (MARGIN + 6, mid),
                        style(TEXT_PX, INK, HPos::Left),
                    ))?;
                }
                root.draw(&Text::new(
                    peer.to_string(),
                    (plot_left - 8, mid),
                    style(
                        TEXT_PX,
                        if is_reference(peer) { MUTED } else { INK },
                        HPos::Right,
                    ),
                ))?;
                // The value beyond the bar's end, or inside it where the
                // plot has no room.
                let label = ratio_label(*ratio);
                let lw = text_w(&label, SMALL_PX);
                let (end, _) = px(r, y);
                let (pos, h_pos, ink) = if r >= 1.0 {
                    if end + 4 + lw <= plot_right {
                        (end + 4, HPos::Left, INK)
                    } else {
                        (end - 4, HPos::Right, WHITE)
                    }
                } else if end - 4 - lw >= plot_left {
                    (end - 4, HPos::Right, INK)
                } else {
                    (end + 4, HPos::Left, WHITE)
                };
                root.draw(&Text::new(label, (pos, mid), style(SMALL_PX, ink, h_pos)))?;
            }
        }
        at += h;
    }
    parity_lines.push((parity_from, plot_bottom));
    for (from, to) in parity_lines {
        if to > from {
            root.draw(&PathElement::new(
                vec![(parity, from), (parity, to)],
                INK.stroke_width(2),
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, ours: f64, peer: Option<(&str, f64)>) -> Row {
        Row {
            case: case.into(),
            ours_ns: Some(ours),
            peer: peer.map(|p| p.0.into()),
            peer_ns: peer.map(|p| p.1),
        }
    }

    #[test]
    fn draws_every_case_and_peer() {
        let rows = [
            row("G1/get-put-64B", 4.0, Some(("mimalloc", 5.0))),
            row("G1/get-put-64B", 4.0, Some(("ours-typed", 4.2))),
            row("K1/kmem-mix", 30.0, Some(("glibc", 15.0))),
            row("V1/bestfit/L=100", 90.0, Some(("vmem-crate", 9000.0))),
            row("P0/splraise-splx", 2.0, None),
        ];
        let svg = svg(&rows, "test machine, 2026-01-01").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for s in [
            "G1",
            "get-put-64B",
            "mimalloc",
            "ours-typed",
            "K1",
            "kmem-mix",
            "glibc",
            "bestfit/L=100",
            "vmem-crate",
            "1.25×",
            "0.50×",
            "100.0×",
            "test machine, 2026-01-01",
        ] {
            assert!(svg.contains(s), "{s} missing");
        }
        // No peer, no bar.
        assert!(!svg.contains("splraise-splx"));
        // The goal's words come from GOALS, escaped for XML.
        assert!(svg.contains("pool_cache get+put, 64 B, hot, one thread"));
    }

    #[test]
    fn no_ratios_still_draws() {
        let svg = svg(&[row("P0/splraise-splx", 2.0, None)], "m").unwrap();
        assert!(svg.contains("</svg>"));
    }

    #[test]
    fn references_are_ours_or_floors() {
        assert!(is_reference("ours-largehash"));
        assert!(is_reference("kmem-K1"));
        assert!(!is_reference("mimalloc"));
        assert!(!is_reference("ours"));
    }
}
