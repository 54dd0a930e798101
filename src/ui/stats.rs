//! Frame statistics for measuring the window (`--frame-stats PATH`): one
//! JSON line a second with the frame rate and the time spent building the UI.

use std::io::Write;
use std::time::Duration;

pub struct FrameStats {
    out: std::fs::File,
    window_start: Option<f64>,
    frames: u32,
    ui_ms: Vec<f64>,
}

impl FrameStats {
    pub fn create(path: &std::path::Path) -> std::io::Result<FrameStats> {
        Ok(FrameStats {
            out: std::fs::File::create(path)?,
            window_start: None,
            frames: 0,
            ui_ms: Vec::with_capacity(256),
        })
    }

    /// Counts a frame drawn at `now_secs` whose UI took `ui`.
    pub fn frame(&mut self, now_secs: f64, ui: Duration) {
        let start = *self.window_start.get_or_insert(now_secs);
        self.frames += 1;
        self.ui_ms.push(ui.as_secs_f64() * 1e3);
        let span = now_secs - start;
        if span >= 1.0 {
            self.ui_ms.sort_by(f64::total_cmp);
            let q = |f: f64| self.ui_ms[((self.ui_ms.len() - 1) as f64 * f) as usize];
            let line = serde_json::json!({
                "fps": f64::from(self.frames - 1) / span,
                "ui_ms_p50": q(0.5),
                "ui_ms_p99": q(0.99),
                "ui_ms_max": q(1.0),
            });
            let _ = writeln!(self.out, "{line}");
            self.window_start = Some(now_secs);
            self.frames = 1;
            self.ui_ms.clear();
        }
    }
}
