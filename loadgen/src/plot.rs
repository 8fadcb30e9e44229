//! Latency-by-percentile charts from HdrHistogram percentile distributions (`.hgrm`).
//!
//! In: `.hgrm` text as `ringway::telemetry::hgrm` writes it (and as Java's
//! `outputPercentileDistribution` and wrk2 do): a `Value Percentile TotalCount …` header,
//! rows of `value percentile count [1/(1-percentile)]` with values in milliseconds, then
//! `#[…]` footer lines. Lines before the header and after the footer are ignored (wrk2 prints
//! its summary around the table). Out: an SVG or PNG chart with every run overlaid, drawn as
//! the HdrHistogram plotter does: x is `1/(1-p)` on a log scale labelled as percentiles, y is
//! latency in ms from 0.
//!
//! It does not record or merge histograms, and it reads no font for SVG (the viewer renders
//! the text). PNG rasterises text, so it reads DejaVu Sans at run time; the title and legend
//! are laid out by hand because plotters' own caption and legend would need a font for SVG too.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One run's distribution: (percentile in 0..=1, value in ms) rows in file order.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{origin} line {line}: {what}")]
    Line {
        origin: String,
        line: usize,
        what: String,
    },
    #[error("{origin}: no rows (is it an .hgrm percentile distribution?)")]
    NoRows { origin: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: unsupported chart format; use .svg or .png", path.display())]
    Extension { path: PathBuf },
    #[error("PNG needs a TrueType font: apt-get install fonts-dejavu-core (or write .svg)")]
    NoFont,
    #[error("{}: nothing to plot (no series given)", path.display())]
    NoSeries { path: PathBuf },
    #[error("{}: drawing the chart failed: {what}", path.display())]
    Draw { path: PathBuf, what: String },
}

/// Where Debian, Arch and Fedora put DejaVu Sans; the first that exists is used for PNG.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const FAMILY: &str = "sans-serif";
/// Pixel size of both formats (SVG's is its view box).
const SIZE: (u32, u32) = (1200, 700);
/// `1/(1-p)` of the labelled percentiles: 0%, 90%, 99%, … 99.999%.
const TICKS: [f64; 6] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5];
/// Tableau 10, distinct on white (plotters' `Palette99` has a pale yellow third); then `Palette99`.
const COLOURS: [u32; 10] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf,
];

/// The `(percentile, value)` rows of `.hgrm` text; `origin` names it in errors.
pub fn parse_hgrm(text: &str, origin: &str) -> Result<Vec<(f64, f64)>, Error> {
    let mut lines = text.lines().enumerate();
    // wrk2 prints its own report first: skip to the header.
    let header = |l: &str| {
        let mut words = l.split_whitespace();
        words.next() == Some("Value") && words.next() == Some("Percentile")
    };
    let no_rows = || Error::NoRows {
        origin: origin.to_owned(),
    };
    if !lines.by_ref().any(|(_, l)| header(l)) {
        return Err(no_rows());
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if line.starts_with('#') {
            break; // the footer; wrk2 prints more of its report after it
        }
        if line.is_empty() {
            continue;
        }
        let bad = |what: String| Error::Line {
            origin: origin.to_owned(),
            line: i + 1,
            what,
        };
        let fields: Result<Vec<f64>, _> = line.split_whitespace().map(str::parse).collect();
        let (value, p) = match fields.as_deref() {
            Ok([v, p, _] | [v, p, _, _]) => (*v, *p),
            _ => return Err(bad("expected `value percentile count`".into())),
        };
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(format!("percentile {p} is not in 0..=1")));
        }
        if !(value.is_finite() && value >= 0.0) {
            return Err(bad(format!("latency {value} is not a finite ms value ≥ 0")));
        }
        rows.push((p, value));
    }
    if rows.is_empty() {
        return Err(no_rows());
    }
    Ok(rows)
}

/// Reads and parses one `.hgrm` file, labelled with its file stem.
pub fn load(path: &Path) -> Result<Series, Error> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    Ok(Series {
        label: path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        ),
        points: parse_hgrm(&text, &path.display().to_string())?,
    })
}

/// Writes `out` (.svg or .png, by extension; PNG 1200x700) with every series overlaid.
pub fn plot(series: &[Series], out: &Path, title: &str) -> Result<(), Error> {
    let ext = out.extension().and_then(|e| e.to_str());
    let png = match ext.map(str::to_ascii_lowercase).as_deref() {
        Some("png") => true,
        Some("svg") => false,
        _ => return Err(Error::Extension { path: out.into() }),
    };
    if series.is_empty() {
        return Err(Error::NoSeries { path: out.into() });
    }
    let draw_err = |e: String| Error::Draw {
        path: out.into(),
        what: e,
    };
    if png {
        register_font()?;
        let root = BitMapBackend::new(out, SIZE).into_drawing_area();
        return draw(&root, series, title).map_err(|e| draw_err(e.to_string()));
    }
    // Render to memory so that a failed write is an I/O error naming the path.
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
    draw(&root, series, title).map_err(|e| draw_err(e.to_string()))?;
    drop(root);
    std::fs::write(out, svg).map_err(io_error(out))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// Registers the first font of [`FONTS`] that exists as plotters' `sans-serif`, once.
fn register_font() -> Result<(), Error> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        FONTS.iter().any(|p| {
            // plotters keeps fonts for the life of the process: leak the bytes once.
            std::fs::read(p).is_ok_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
            })
        })
    });
    found.then_some(()).ok_or(Error::NoFont)
}

/// The plotted `(1/(1-p), ms)` points; p = 1 goes at the series' largest finite x.
fn curve(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let finite = |p: f64| p < 1.0;
    let last_x = points
        .iter()
        .filter(|(p, _)| finite(*p))
        .map(|(p, _)| 1.0 / (1.0 - p))
        .fold(1.0, f64::max);
    let x = |p: f64| if finite(p) { 1.0 / (1.0 - p) } else { last_x };
    points.iter().map(|&(p, v)| (x(p), v)).collect()
}

/// The percentile a tick at `x = 1/(1-p)` stands for: 10 → "90%", 1000 → "99.9%".
fn tick_label(x: f64) -> String {
    let decimals = (x.log10().round().max(0.0) as usize).saturating_sub(2);
    format!("{:.*}%", decimals, 100.0 * (1.0 - 1.0 / x))
}

fn colour(i: usize) -> RGBAColor {
    let rgb = |c: u32| RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8).to_rgba();
    COLOURS
        .get(i)
        .map_or_else(|| Palette99::pick(i).to_rgba(), |c| rgb(*c))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let curves: Vec<Vec<(f64, f64)>> = series.iter().map(|s| curve(&s.points)).collect();
    let all = || curves.iter().flatten();
    let reached = all().map(|p| p.0).fold(1.0, f64::max);
    let reached = if reached > 1.0 { reached } else { 10.0 };
    // 1/(1-0.999) is 999.99…: a tick that close counts as reached, and the axis goes to it.
    let near = reached * 1.000_001;
    let ticks: Vec<f64> = TICKS.into_iter().filter(|t| *t <= near).collect();
    let x_max = ticks.iter().copied().fold(reached, f64::max);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };

    root.fill(&WHITE)?;
    let centred = Pos::new(HPos::Center, VPos::Top);
    root.draw(&Text::new(
        title.to_owned(),
        (SIZE.0 as i32 / 2, 16),
        (FAMILY, 28).into_font().into_text_style(root).pos(centred),
    ))?;
    let mut chart = ChartBuilder::on(root)
        .margin(20)
        .margin_top(60)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d((1.0..x_max).log_scale().with_key_points(ticks), 0.0..y_top)?;
    chart
        .configure_mesh()
        .max_light_lines(4)
        .x_desc("Percentile")
        .y_desc("Latency (ms)")
        .x_label_formatter(&|x| tick_label(*x))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()?;
    for (i, c) in curves.iter().enumerate() {
        let colour = colour(i).stroke_width(2);
        chart.draw_series(LineSeries::new(c.iter().copied(), colour))?;
    }

    // The legend, top left where the curves are low; widths are estimated from the label
    // length (about 0.6 em a character, at 16 px) so that no font is needed to lay it out.
    let area = chart.plotting_area().strip_coord_spec();
    let line_h = 24;
    let widest = series.iter().map(|s| s.label.chars().count()).max();
    let w = 60 + 8 * widest.unwrap_or(0) as i32;
    let (x0, y0, h) = (16, 16, 12 + line_h * series.len() as i32);
    let frame = [(x0, y0), (x0 + w, y0 + h)];
    area.draw(&Rectangle::new(frame, WHITE.mix(0.9).filled()))?;
    area.draw(&Rectangle::new(frame, BLACK.stroke_width(1)))?;
    let left = Pos::new(HPos::Left, VPos::Center);
    let style = (FAMILY, 16).into_font().into_text_style(&area).pos(left);
    for (i, s) in series.iter().enumerate() {
        let y = y0 + 6 + line_h / 2 + line_h * i as i32;
        let colour = colour(i).stroke_width(3);
        area.draw(&PathElement::new([(x0 + 10, y), (x0 + 40, y)], colour))?;
        area.draw(&Text::new(s.label.clone(), (x0 + 48, y), style.clone()))?;
    }
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact layout `ringway::telemetry::hgrm::render` writes.
    const HGRM: &str = "       Value     Percentile TotalCount 1/(1-Percentile)

    0.100000 0.000000000000          1           1.00
    0.500000 0.500000000000        500           2.00
    0.900000 0.900000000000        900          10.00
    0.990000 0.990000000000        990         100.00
    1.000000 1.000000000000       1000
#[Mean    =     0.500500, StdDeviation   =     0.288675]
#[Max     =     1.000000, Total count    =         1000]
#[Buckets =           20, SubBuckets     =         2048]
";

    const WRK2: &str = "Running 10s test @ http://127.0.0.1:8080/
 50.000%    1.20ms
  Detailed Percentile spectrum:
       Value   Percentile   TotalCount 1/(1-Percentile)

       0.521     0.000000            1         1.00
       1.203     0.500000         5012         2.00
       3.100     0.999000         9990      1000.00
       4.207     1.000000        10000          inf
#[Mean    =        1.251, StdDeviation   =        0.410]
#[Max     =        4.204, Total count    =        10000]
#[Buckets =           27, SubBuckets     =         2048]
----------------------------------------------------------
Requests/sec:   1000.00
";

    #[test]
    fn parses_ringway_format_with_three_column_last_row() {
        let rows = parse_hgrm(HGRM, "a.hgrm").unwrap();
        assert_eq!(
            rows,
            [(0.0, 0.1), (0.5, 0.5), (0.9, 0.9), (0.99, 0.99), (1.0, 1.0)]
        );
    }

    #[test]
    fn parses_wrk2_output_skipping_its_report() {
        let rows = parse_hgrm(WRK2, "wrk2.txt").unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[2], (0.999, 3.1));
        assert_eq!(rows[3], (1.0, 4.207));
    }

    #[test]
    fn errors_name_origin_and_line() {
        let empty = parse_hgrm("", "a.hgrm").unwrap_err().to_string();
        assert_eq!(
            empty,
            "a.hgrm: no rows (is it an .hgrm percentile distribution?)"
        );
        let garbage = parse_hgrm("hello\nworld\n", "b.hgrm").unwrap_err();
        assert!(garbage.to_string().starts_with("b.hgrm: no rows"));
        let header_only = parse_hgrm(&HGRM[..HGRM.find("\n\n").unwrap()], "c.hgrm");
        assert!(matches!(header_only, Err(Error::NoRows { .. })));
        let bad_row = HGRM.replace("0.500000 0.5", "0.500000 zero.5");
        let e = parse_hgrm(&bad_row, "a.hgrm").unwrap_err().to_string();
        assert_eq!(e, "a.hgrm line 4: expected `value percentile count`");
        let bad_p = HGRM.replace("0.900000 0.900000000000", "0.900000 9");
        let e = parse_hgrm(&bad_p, "a.hgrm").unwrap_err().to_string();
        assert_eq!(e, "a.hgrm line 5: percentile 9 is not in 0..=1");
    }

    #[test]
    fn x_axis_maps_percentiles_and_clips_the_last_row() {
        let c = curve(&parse_hgrm(HGRM, "a").unwrap());
        let xs: Vec<f64> = c.iter().map(|p| p.0).collect();
        assert!((xs[3] - 100.0).abs() < 1e-6 && xs[4] == xs[3], "{xs:?}");
        let labels: Vec<String> = TICKS.into_iter().map(tick_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    fn two_runs() -> Vec<Series> {
        let run = |label: &str, text| Series {
            label: label.into(),
            points: parse_hgrm(text, label).unwrap(),
        };
        vec![run("baseline-run", WRK2), run("candidate-run", HGRM)]
    }

    #[test]
    fn load_labels_by_stem_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-a.hgrm");
        std::fs::write(&path, HGRM).unwrap();
        let s = load(&path).unwrap();
        assert_eq!((s.label.as_str(), s.points.len()), ("run-a", 5));
        let missing = dir.path().join("nope.hgrm");
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
    }

    #[test]
    fn svg_has_both_labels() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("latency.svg");
        plot(&two_runs(), &out, "p99 by run").unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("<svg") && svg.contains("p99 by run"));
        assert!(svg.contains("baseline-run") && svg.contains("candidate-run"));
        assert!(svg.contains("99.9%"));
    }

    #[test]
    fn png_starts_with_magic() {
        if !FONTS.iter().any(|f| Path::new(f).exists()) {
            println!("skipped: no DejaVu Sans font to render PNG text with");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("latency.png");
        plot(&two_runs(), &out, "p99 by run").unwrap();
        let png = std::fs::read(&out).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn unknown_extension_and_no_series_error() {
        let e = plot(&two_runs(), Path::new("/tmp/x.jpg"), "t").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/tmp/x.jpg: unsupported chart format; use .svg or .png"
        );
        let e = plot(&[], Path::new("/tmp/x.svg"), "t").unwrap_err();
        assert!(matches!(e, Error::NoSeries { .. }));
    }
}
