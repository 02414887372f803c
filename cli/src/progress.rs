//! Progress bars on stderr. They are drawn only when stdout and stderr are both terminals and
//! `--json` is off; otherwise they are hidden and every call on them does nothing.

use std::time::Duration;

use std::fmt::Write;

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

use crate::views::TaskView;

const TICK: Duration = Duration::from_millis(120);

fn bar(visible: bool, template: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", rate)
        .progress_chars("=> ");
    let bar = ProgressBar::new(0).with_style(style);
    bar.enable_steady_tick(TICK);
    bar
}

/// Serials per second as a whole number ("1,524,804/s"); indicatif's `per_sec` shows
/// decimals.
fn rate(state: &ProgressState, out: &mut dyn Write) {
    let _ = write!(out, "{}/s", HumanCount(state.per_sec().max(0.0) as u64));
}

/// A task's generation progress: `generated` of `count`, with its state as the message.
pub struct TaskBar(ProgressBar);

impl TaskBar {
    pub fn new(visible: bool) -> TaskBar {
        TaskBar(bar(
            visible,
            "{spinner} {msg:8} [{bar:40}] {human_pos}/{human_len} serials ({rate}, eta {eta})",
        ))
    }

    pub fn update(&self, view: &TaskView) {
        self.0.set_length(view.count);
        self.0.set_position(view.generated);
        self.0.set_message(view.state.as_str());
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A download: serials written so far of the `expected` number.
pub fn download(visible: bool, expected: u64) -> ProgressBar {
    let bar = bar(
        visible,
        "{spinner} download [{bar:40}] {human_pos}/{human_len} serials ({rate}, eta {eta})",
    );
    bar.set_length(expected);
    bar
}
