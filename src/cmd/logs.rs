use super::Ctx;
use crate::container::{log, Container};
use anyhow::Result;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

pub fn run(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut c = Container::find(&store, &args.container)?;
    let tail = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse::<usize>().map_err(|_| anyhow::anyhow!("--tail {:?}: expected a number or all", n))?),
    };
    let path = c.log_path();
    let (mut entries, mut offset) = log::read_from(&path, 0)?;
    if let Some(n) = tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    print(&entries, args.timestamps);
    if args.follow {
        loop {
            let up = c.reload().is_ok() && c.is_up() && c.live_pid().is_some();
            let (more, next) = log::read_from(&path, offset)?;
            offset = next;
            print(&more, args.timestamps);
            if !up && more.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    Ok(0)
}

fn print(entries: &[log::Entry], timestamps: bool) {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for e in entries {
        let w: &mut dyn Write = if e.stream == "stderr" { &mut err } else { &mut out };
        if timestamps {
            let _ = write!(w, "{} ", e.time);
        }
        let _ = w.write_all(e.log.as_bytes());
    }
    let _ = out.flush();
}
