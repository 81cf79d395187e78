//! The report's page: `page.html`, a minijinja template (every value HTML-escaped), filled with
//! the figures as base64 `data:` URLs so that the one file shows everything offline.

use base64::Engine;
use image::RgbImage;
use serde::Serialize;
use std::path::Path;

/// One picture: `file` beside the page, and embedded in it.
#[derive(Serialize)]
pub struct Figure {
    pub file: String,
    pub caption: String,
    pub width: u32,
    pub height: u32,
    #[serde(skip)]
    pub png: Vec<u8>,
    base64: String,
}

impl Figure {
    /// `stem` names the file (`stem.png`).
    pub fn new(stem: &str, caption: &str, img: RgbImage) -> Figure {
        let png = super::charts::png_bytes(&img);
        Figure {
            file: format!("{stem}.png"),
            caption: caption.to_string(),
            width: img.width(),
            height: img.height(),
            base64: base64::engine::general_purpose::STANDARD.encode(&png),
            png,
        }
    }
}

/// A named figure of the run (a row of the page's table).
#[derive(Serialize)]
pub struct Fact {
    pub name: String,
    pub value: String,
}

impl Fact {
    pub fn new(name: &str, value: &str) -> Fact {
        Fact {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A titled part of the page: a paragraph and figures.
#[derive(Serialize)]
pub struct Section {
    /// The anchor of its heading (`index.html#map`), from the title.
    pub id: String,
    pub title: String,
    pub text: String,
    pub figures: Vec<Figure>,
}

impl Section {
    pub fn new(title: &str) -> Section {
        let id = title
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        Section {
            id,
            title: title.into(),
            text: String::new(),
            figures: Vec::new(),
        }
    }
}

#[derive(Serialize)]
pub struct Page {
    pub run: String,
    pub data: String,
    pub version: &'static str,
    pub notes: Vec<String>,
    pub facts: Vec<Fact>,
    pub sections: Vec<Section>,
    pub config: String,
}

impl Page {
    pub fn new(run: &Path, data: &str) -> Page {
        Page {
            run: run.display().to_string(),
            data: data.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            notes: Vec::new(),
            facts: Vec::new(),
            sections: Vec::new(),
            config: String::new(),
        }
    }

    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.sections.iter().flat_map(|s| s.figures.iter())
    }

    /// The HTML text.
    pub fn render(&self) -> anyhow::Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_template("page.html", include_str!("page.html"))?;
        Ok(env
            .get_template("page.html")?
            .render(minijinja::value::Serde(self))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_text_and_embeds_every_figure() {
        let mut p = Page::new(Path::new("run <x>"), "data & more");
        p.facts.push(Fact::new("kNN", "50 %"));
        let mut s = Section::new("Training curves");
        assert_eq!(s.id, "training-curves");
        s.figures
            .push(Figure::new("loss", "the loss", RgbImage::new(3, 2)));
        p.sections.push(s);
        p.config = "[train]\nname = \"<b>\"".into();
        let html = p.render().unwrap();
        assert!(
            html.contains("run &lt;x&gt;") && html.contains("data &amp; more"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;") && !html.contains("<b>"));
        assert!(
            html.contains("data:image/png;base64,iVBOR"),
            "PNG magic in base64"
        );
        assert!(html.contains("href=\"loss.png\"") && html.contains("width=\"3\" height=\"2\""));
        assert_eq!(p.figures().count(), 1);
        assert!(
            html.contains("<h2 id=\"training-curves\">")
                && html.contains("href=\"#training-curves\"")
        );
    }
}
