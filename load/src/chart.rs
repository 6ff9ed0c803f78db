//! The offered-load chart: throughput and p99 latency against the offered rate, one line per
//! agent, drawn with plotters into a buffer and written as a PNG.
//!
//! Text needs a TrueType font: plotters is built without its system-font stack (font-kit) to
//! keep the build small, so a font file is read from a usual system location (or given).

use crate::agents::AgentKind;
use crate::error::LoadError;
use crate::report::RunReport;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a sans-serif TrueType font usually is on Linux.
pub const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 600;
const FONT: &str = "sans-serif";

fn chart_error(error: impl std::fmt::Display) -> LoadError {
    LoadError::Chart(error.to_string())
}

fn color(kind: AgentKind) -> RGBColor {
    match kind {
        AgentKind::Tokio => RGBColor(31, 119, 180),
        AgentKind::Smol => RGBColor(44, 160, 44),
        AgentKind::AsyncStd => RGBColor(148, 103, 189),
        AgentKind::Blocking => RGBColor(127, 127, 127),
        AgentKind::Official => RGBColor(214, 39, 40),
    }
}

/// Registers the font plotters draws text with: `font`, or the first of [`FONT_CANDIDATES`].
fn register_font(font: Option<&Path>) -> Result<(), LoadError> {
    let path =
        match font {
            Some(path) => path.to_owned(),
            None => FONT_CANDIDATES.iter().map(PathBuf::from).find(|path| path.is_file()).ok_or_else(|| {
                LoadError::Chart(format!("no font found in {FONT_CANDIDATES:?}; give one with --font"))
            })?,
        };
    let bytes = std::fs::read(&path).map_err(|source| LoadError::Read { path: path.clone(), source })?;
    // plotters keeps fonts for the life of the process; one chart per run, so one leak.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| LoadError::Chart(format!("{} is not a usable TrueType font", path.display())))
}

/// The open-loop runs among `runs`, by agent, in rising offered rate.
fn series(runs: &[RunReport]) -> BTreeMap<AgentKind, Vec<&RunReport>> {
    let mut by_agent: BTreeMap<AgentKind, Vec<&RunReport>> = BTreeMap::new();
    for run in runs.iter().filter(|run| run.offered.is_some()) {
        by_agent.entry(run.agent).or_default().push(run);
    }
    for points in by_agent.values_mut() {
        points.sort_by(|a, b| a.offered.unwrap_or(0.0).total_cmp(&b.offered.unwrap_or(0.0)));
    }
    by_agent
}

/// Draws throughput (left) and p99 latency on a log scale (right) against the offered rate of
/// the open-loop runs among `runs`, and writes the PNG to `path`.
pub fn draw(runs: &[RunReport], path: &Path, font: Option<&Path>, title: &str) -> Result<(), LoadError> {
    let by_agent = series(runs);
    if by_agent.is_empty() {
        return Err(LoadError::Chart("no open-loop runs to draw".into()));
    }
    register_font(font)?;
    let offered_max = runs.iter().filter_map(|run| run.offered).fold(1.0, f64::max) * 1.05;
    let throughput_max = runs.iter().map(RunReport::throughput).fold(offered_max, f64::max) * 1.1;
    let p99s = || runs.iter().filter(|run| run.offered.is_some()).map(|run| run.latency.p99.as_secs_f64() * 1000.0);
    let p99_min = p99s().fold(f64::INFINITY, f64::min).max(0.01) / 2.0;
    let p99_max = p99s().fold(0.0, f64::max).max(p99_min * 4.0) * 2.0;

    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let root = root.titled(title, (FONT, 24)).map_err(chart_error)?;
        let (left, right) = root.split_horizontally(WIDTH / 2);

        let mut throughput = ChartBuilder::on(&left)
            .caption("Replies per second", (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..offered_max, 0.0..throughput_max)
            .map_err(chart_error)?;
        throughput
            .configure_mesh()
            .x_desc("offered load (messages per second)")
            .y_desc("replies per second")
            .label_style((FONT, 14))
            .draw()
            .map_err(chart_error)?;

        let mut latency = ChartBuilder::on(&right)
            .caption("p99 latency, send to reply decrypted (log scale)", (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..offered_max, (p99_min..p99_max).log_scale())
            .map_err(chart_error)?;
        latency
            .configure_mesh()
            .x_desc("offered load (messages per second)")
            .y_desc("p99 (ms)")
            .y_labels(12)
            .y_label_formatter(&|ms| if *ms >= 10.0 { format!("{ms:.0}") } else { format!("{ms:.1}") })
            .label_style((FONT, 14))
            .draw()
            .map_err(chart_error)?;

        // Where every offered message is answered as fast as it comes.
        let offered = ShapeStyle::from(&RGBColor(170, 170, 170)).stroke_width(1);
        throughput
            .draw_series(LineSeries::new([(0.0, 0.0), (offered_max, offered_max)], offered))
            .map_err(chart_error)?
            .label("replies = offered")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], offered));
        for (kind, points) in &by_agent {
            let color = color(*kind);
            let style = ShapeStyle::from(&color).stroke_width(2);
            let name = if kind.is_ours() { format!("ours ({kind})") } else { "official (Python)".to_owned() };
            let rates: Vec<(f64, f64)> =
                points.iter().map(|run| (run.offered.unwrap_or(0.0), run.throughput())).collect();
            throughput
                .draw_series(LineSeries::new(rates.clone(), style))
                .map_err(chart_error)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            throughput
                .draw_series(rates.into_iter().map(|point| Circle::new(point, 3, color.filled())))
                .map_err(chart_error)?;
            let p99: Vec<(f64, f64)> = points
                .iter()
                .map(|run| (run.offered.unwrap_or(0.0), (run.latency.p99.as_secs_f64() * 1000.0).max(p99_min)))
                .collect();
            latency
                .draw_series(LineSeries::new(p99.clone(), style))
                .map_err(chart_error)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            latency
                .draw_series(p99.into_iter().map(|point| Circle::new(point, 3, color.filled())))
                .map_err(chart_error)?;
        }
        throughput
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;
        latency
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    write_png(&buffer, path)
}

fn write_png(rgb: &[u8], path: &Path) -> Result<(), LoadError> {
    let file = std::fs::File::create(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(chart_error)?;
    writer.write_image_data(rgb).map_err(chart_error)?;
    writer.finish().map_err(chart_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;
    use std::time::Duration;

    fn run(agent: AgentKind, offered: Option<f64>, p99_ms: u64) -> RunReport {
        RunReport {
            agent,
            offered,
            messages: 100,
            elapsed: Duration::from_secs(1),
            latency: Percentiles::of(vec![Duration::from_millis(p99_ms)]),
            peak_resident: 1 << 20,
            store_bytes: 1 << 20,
            cpu: Duration::from_millis(50),
            started_in: Duration::from_millis(10),
        }
    }

    #[test]
    fn series_keep_open_loop_runs_by_agent_in_rising_rate() {
        let runs = [
            run(AgentKind::Tokio, Some(200.0), 3),
            run(AgentKind::Official, Some(50.0), 900),
            run(AgentKind::Tokio, None, 2),
            run(AgentKind::Tokio, Some(50.0), 2),
        ];
        let by_agent = series(&runs);
        let tokio: Vec<Option<f64>> = by_agent[&AgentKind::Tokio].iter().map(|run| run.offered).collect();
        assert_eq!(tokio, [Some(50.0), Some(200.0)]);
        assert_eq!(by_agent[&AgentKind::Official].len(), 1);
        assert!(draw(&runs[2..3], Path::new("unused.png"), None, "none").is_err(), "no open-loop run, no chart");
    }

    #[test]
    fn a_chart_is_written_as_a_png() {
        let runs = [
            run(AgentKind::Tokio, Some(50.0), 3),
            run(AgentKind::Tokio, Some(200.0), 4),
            run(AgentKind::Official, Some(50.0), 40),
            run(AgentKind::Official, Some(200.0), 9000),
        ];
        let dir = crate::agents::ScratchDir::new("chart-test").unwrap();
        let path = dir.path().join("chart.png");
        draw(&runs, &path, None, "test").expect("a chart, with a system font");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 5_000, "a drawn chart, not an empty image: {} bytes", bytes.len());
    }
}
