//! The report as a person sees it: headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) loads `RUN/report/index.html` from disk; no console errors, every image decoded,
//! and a screenshot with something on it.

mod common;
use common::{run, selfsup, text, tiny};
use headless_chrome::protocol::cdp::{Log, Page::CaptureScreenshotFormatOption, Runtime};
use headless_chrome::{protocol::cdp::types::Event, Browser, LaunchOptions};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Chromium's binary: $CHROME, or where Debian and others put it.
fn chromium() -> PathBuf {
    let candidates = std::env::var_os("CHROME")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ]
            .map(PathBuf::from),
        );
    let found = candidates.clone().find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "this test needs Chromium (none of {:?}): `apt-get install chromium` (.ci/run does), or set \
             CHROME to a Chrome/Chromium binary",
            candidates.collect::<Vec<_>>()
        )
    })
}

#[test]
fn the_report_opens_in_chromium_with_every_image_and_no_console_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--epochs", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(selfsup().args([
        "report",
        "--run",
        out.to_str().unwrap(),
        "--map-points",
        "40",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let page = out.join("report").join("index.html");
    let pngs = std::fs::read_dir(out.join("report"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some(OsStr::new("png")))
        .count();

    let profile = dir.path().join("chromium-profile");
    // the flags of a machine with a closed network: no background connections to refuse
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let browser = Browser::new(LaunchOptions {
        headless: true,
        sandbox: false,
        path: Some(chromium()),
        window_size: Some((1400, 1800)),
        user_data_dir: Some(profile),
        args,
        ..Default::default()
    })
    .expect("Chromium starts");
    let tab = browser.new_tab().unwrap();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = errors.clone();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let message = match event {
            Event::RuntimeConsoleAPICalled(e)
                if matches!(
                    e.params.Type,
                    Runtime::ConsoleAPICalledEventTypeOption::Error
                        | Runtime::ConsoleAPICalledEventTypeOption::Assert
                ) =>
            {
                Some(format!("console: {:?}", e.params.args))
            }
            Event::RuntimeExceptionThrown(e) => {
                Some(format!("exception: {:?}", e.params.exception_details))
            }
            Event::LogEntryAdded(e) if e.params.entry.level == Log::LogEntryLevel::Error => Some(
                format!("log: {} {:?}", e.params.entry.text, e.params.entry.url),
            ),
            _ => None,
        };
        if let Some(m) = message {
            seen.lock().unwrap().push(m);
        }
    }))
    .unwrap();
    tab.navigate_to(&format!("file://{}", page.display()))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    // every image decoded: complete, with a width
    let images = tab
        .evaluate(
            "JSON.stringify(Array.from(document.images).map(i => [i.complete, i.naturalWidth]))",
            false,
        )
        .unwrap()
        .value
        .expect("a JSON string");
    let images: Vec<(bool, u32)> = serde_json::from_str(images.as_str().unwrap()).unwrap();
    assert_eq!(images.len(), pngs, "one <img> per figure: {images:?}");
    assert!(images.iter().all(|&(done, w)| done && w > 0), "{images:?}");
    let title = tab
        .evaluate("document.title", false)
        .unwrap()
        .value
        .unwrap();
    assert!(
        title.as_str().unwrap().starts_with("selfsup report"),
        "{title}"
    );

    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let shot = image::load_from_memory(&shot).unwrap().to_rgb8();
    let inked = shot.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let colours: std::collections::HashSet<[u8; 3]> = shot.pixels().map(|p| p.0).collect();
    assert!(
        inked > shot.pixels().len() / 50 && colours.len() > 50,
        "a blank screenshot: {inked} inked pixels, {} colours",
        colours.len()
    );
    std::thread::sleep(std::time::Duration::from_millis(300)); // late console events
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
}
