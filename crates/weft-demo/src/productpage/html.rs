//! The productpage's HTML: one page, inline CSS, no external assets.

use std::fmt::Write;

use super::{Product, ProductpageConfig};
use crate::details::BookDetails;
use crate::reviews::{ProductReviews, Rating};

/// What the product page shows.
pub(super) struct Page<'a> {
    pub user: Option<&'a str>,
    pub product: &'a Product,
    pub details: Result<&'a BookDetails, &'a str>,
    pub reviews: Result<&'a ProductReviews, &'a str>,
}

const STYLE: &str = r#"
  * { box-sizing: border-box; }
  body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
         color: #222; background: #f4f5f7; line-height: 1.45; }
  nav { background: #23272b; color: #ddd; padding: .6rem 1.5rem; display: flex;
        align-items: center; justify-content: space-between; flex-wrap: wrap; gap: .5rem; }
  nav .brand { color: #fff; font-size: 1.15rem; font-weight: 600; text-decoration: none; }
  nav form { display: flex; gap: .4rem; margin: 0; }
  nav input { padding: .3rem .5rem; border: 1px solid #555; border-radius: 4px; background: #fff; }
  nav button, .button { padding: .3rem .8rem; border: 0; border-radius: 4px; background: #2a6ebb;
                        color: #fff; cursor: pointer; font-size: .95rem; text-decoration: none; }
  nav .user a { color: #9cc3f0; }
  main { max-width: 980px; margin: 1.5rem auto; padding: 0 1rem; }
  h1 { text-align: center; color: #2a6ebb; margin: .5rem 0 .25rem; }
  .summary { text-align: center; max-width: 720px; margin: 0 auto 1.5rem; color: #444; }
  .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; align-items: start; }
  .card { background: #fff; border-radius: 6px; padding: 1rem 1.25rem;
          box-shadow: 0 1px 3px rgba(0, 0, 0, .12); }
  .card h2 { font-size: 1.1rem; text-align: center; color: #2a6ebb; margin: 0 0 .75rem; }
  .card.failed h2 { color: #a94442; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 0; }
  dt { font-weight: 600; }
  dd { margin: 0; }
  blockquote { margin: 0 0 1rem; padding: .4rem 1rem; border-left: 4px solid #d8dde3; }
  blockquote p { margin: 0 0 .3rem; }
  blockquote small { display: block; color: #666; }
  .stars { font-size: 1.35rem; letter-spacing: .12rem; }
  .error { color: #a94442; }
  .served-by { margin: .75rem 0 0; font-size: .9rem; color: #555; border-top: 1px solid #eee;
               padding-top: .6rem; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e3e6ea; }
  footer { text-align: center; color: #888; font-size: .85rem; margin: 2rem 0 1rem; }
  @media (max-width: 700px) { .columns { grid-template-columns: 1fr; } }
"#;

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

fn nav(out: &mut String, user: Option<&str>) {
    out.push_str("<nav>\n  <a class=\"brand\" href=\"productpage\">BookInfo Sample</a>\n");
    match user {
        Some(user) => {
            let _ = writeln!(
                out,
                "  <span class=\"user\">Signed in as <strong>{}</strong> (<a href=\"logout\">sign out</a>)</span>",
                escape(user)
            );
        }
        None => out.push_str(
            "  <form method=\"post\" action=\"login\" name=\"login_form\">\n\
             \x20   <input type=\"text\" name=\"username\" placeholder=\"User Name\" aria-label=\"User Name\" required>\n\
             \x20   <input type=\"password\" name=\"passwd\" placeholder=\"Password\" aria-label=\"Password\">\n\
             \x20   <button type=\"submit\">Sign in</button>\n  </form>\n",
        ),
    }
    out.push_str("</nav>\n");
}

/// The product page.
pub(super) fn productpage(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    head(&mut out, "Simple Bookstore App");
    nav(&mut out, page.user);
    out.push_str("<main>\n");
    let _ = write!(
        out,
        "<h1>{}</h1>\n<p class=\"summary\">Summary: {}</p>\n<div class=\"columns\">\n",
        escape(&page.product.title),
        // The product's own HTML, written in this crate.
        page.product.description_html
    );

    match page.details {
        Ok(d) => {
            out.push_str("<section class=\"card details\">\n<h2>Book Details</h2>\n<dl>\n");
            for (label, value) in [
                ("Type:", d.kind.clone()),
                ("Pages:", d.pages.to_string()),
                ("Publisher:", d.publisher.clone()),
                ("Language:", d.language.clone()),
                ("ISBN-10:", d.isbn10.clone()),
                ("ISBN-13:", d.isbn13.clone()),
            ] {
                let _ = writeln!(out, "  <dt>{label}</dt><dd>{}</dd>", escape(&value));
            }
            out.push_str("</dl>\n</section>\n");
        }
        Err(error) => {
            let _ = write!(
                out,
                "<section class=\"card details failed\">\n<h2>Error fetching product details!</h2>\n\
                 <p class=\"error\">{}</p>\n</section>\n",
                escape(error)
            );
        }
    }

    match page.reviews {
        Ok(r) => {
            out.push_str("<section class=\"card reviews\">\n<h2>Book Reviews</h2>\n");
            for review in &r.reviews {
                let _ = write!(
                    out,
                    "<blockquote>\n  <p>{}</p>\n  <small>{}</small>\n",
                    escape(&review.text),
                    escape(&review.reviewer)
                );
                match &review.rating {
                    Some(Rating::Stars { stars, color }) => {
                        let stars = (*stars).min(5) as usize;
                        let color = if color.chars().all(|c| c.is_ascii_alphanumeric() || c == '#')
                        {
                            color.as_str()
                        } else {
                            "black"
                        };
                        let _ = writeln!(
                            out,
                            "  <span class=\"stars stars-{color}\" style=\"color: {color}\" title=\"{stars} out of 5 stars\">{}{}</span>",
                            "\u{2605}".repeat(stars),
                            "\u{2606}".repeat(5 - stars)
                        );
                    }
                    Some(Rating::Error { error }) => {
                        let _ = writeln!(out, "  <p class=\"error\"><i>{}</i></p>", escape(error));
                    }
                    None => {}
                }
                out.push_str("</blockquote>\n");
            }
            if !r.podname.is_empty() {
                let _ = write!(
                    out,
                    "<p class=\"served-by\">Reviews served by: {}",
                    escape(&r.podname)
                );
                if !r.clustername.is_empty() {
                    let _ = write!(out, " (cluster: {})", escape(&r.clustername));
                }
                out.push_str("</p>\n");
            }
            out.push_str("</section>\n");
        }
        Err(error) => {
            let _ = write!(
                out,
                "<section class=\"card reviews failed\">\n<h2>Error fetching product reviews!</h2>\n\
                 <p class=\"error\">{}</p>\n</section>\n",
                escape(error)
            );
        }
    }
    out.push_str(
        "</div>\n</main>\n<footer>Bookinfo, served by weft-demo</footer>\n</body>\n</html>\n",
    );
    out
}

/// The index page: what bookinfo is made of, and a link to the product page.
pub(super) fn index(config: &ProductpageConfig) -> String {
    let mut out = String::with_capacity(4 * 1024);
    head(&mut out, "Simple Bookstore App");
    nav(&mut out, None);
    out.push_str(
        "<main>\n<h1>Hello! This is a simple bookstore application.</h1>\n\
         <p class=\"summary\">It is made of four microservices: productpage calls details and \
         reviews, and reviews (v2, v3) calls ratings.</p>\n\
         <p class=\"summary\"><a class=\"button\" href=\"productpage\">Go to the product page</a></p>\n\
         <section class=\"card\">\n<h2>Backends</h2>\n<table>\n\
         <tr><th>service</th><th>connects to</th><th>Host</th></tr>\n",
    );
    for (name, up) in [
        ("details", &config.details),
        ("reviews", &config.reviews),
        ("ratings", &config.ratings),
    ] {
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td></tr>",
            escape(up.connect_addr()),
            escape(up.host())
        );
    }
    out.push_str("</table>\n</section>\n</main>\n</body>\n</html>\n");
    out
}

/// Escapes text for HTML content and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
