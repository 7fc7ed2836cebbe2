//! Progress bars for long stages: drawn on a terminal, silent otherwise (CI, pipes, tests, and
//! with `GENRELAB_PROGRESS=0`, which training workers get: their parent draws their progress).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let target = match std::env::var("GENRELAB_PROGRESS").as_deref() {
        Ok("0") => ProgressDrawTarget::hidden(),
        _ => ProgressDrawTarget::stderr(),
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}
