//! `selfsup cache list | clean`: the decoded-image caches (`$SELFSUP_CACHE`, else
//! `~/.cache/selfsup`), each with its data folder, size, images and last use; removing them by
//! age, by data folder or all, never one a running selfsup holds.

use clap::{Args, Subcommand};
use selfsup::data::cache::{self, manage};
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Subcommand)]
pub enum CacheAction {
    /// Every cache: data folder, size, images, last use (most recent first).
    List {
        /// The cache directory [default: $SELFSUP_CACHE, else ~/.cache/selfsup].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove caches: --all, --older-than AGE (not used for that long: 30d, 12h, 2w) or
    /// --data FOLDER (that data folder's). A cache a running selfsup is updating is kept.
    Clean {
        #[arg(long, conflicts_with_all = ["older_than", "data"])]
        all: bool,
        #[arg(long, value_name = "AGE", value_parser = manage::parse_age, conflicts_with = "data")]
        older_than: Option<std::time::Duration>,
        #[arg(long, value_name = "FOLDER")]
        data: Option<PathBuf>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// The cache directory [default: $SELFSUP_CACHE, else ~/.cache/selfsup].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn age(t: SystemTime) -> String {
    let s = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn describe(c: &manage::CacheInfo) -> String {
    format!(
        "{}  {:.1} MiB, {} images{}, used {}  ({})",
        c.source
            .as_ref()
            .map_or("(data folder not recorded)".into(), |s| s
                .display()
                .to_string()),
        mib(c.bytes),
        c.images,
        if c.bad > 0 {
            format!(" ({} bad files remembered)", c.bad)
        } else {
            String::new()
        },
        age(c.last_used),
        c.folder.display()
    )
}

pub fn cache(a: &CacheArgs) -> anyhow::Result<()> {
    match &a.action {
        CacheAction::List { dir } => {
            let dir = dir.clone().unwrap_or_else(cache::default_dir);
            let caches = manage::list(&dir)?;
            let total: u64 = caches.iter().map(|c| c.bytes).sum();
            println!(
                "{}: {} caches, {:.1} MiB",
                dir.display(),
                caches.len(),
                mib(total)
            );
            for c in &caches {
                println!("  {}", describe(c));
            }
            Ok(())
        }
        CacheAction::Clean {
            all,
            older_than,
            data,
            dry_run,
            dir,
        } => {
            let selection = match (all, older_than, data) {
                (true, _, _) => manage::Selection::All,
                (_, Some(d), _) => manage::Selection::UnusedFor(*d),
                (_, _, Some(f)) => manage::Selection::Data(f.clone()),
                _ => anyhow::bail!(
                    "cache clean needs what to remove: --all, --older-than AGE (e.g. 30d) or --data FOLDER"
                ),
            };
            let dir = dir.clone().unwrap_or_else(cache::default_dir);
            let done = manage::clean(&dir, &selection, *dry_run)?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            for c in &done.removed {
                println!("{verb} {}", describe(c));
            }
            for c in &done.in_use {
                println!("kept (a running selfsup holds it) {}", describe(c));
            }
            let freed: u64 = done.removed.iter().map(|c| c.bytes).sum();
            println!(
                "{verb} {} caches, {:.1} MiB, from {}",
                done.removed.len(),
                mib(freed),
                dir.display()
            );
            Ok(())
        }
    }
}
