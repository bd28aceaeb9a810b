//! The page and its files, served from memory; nothing outside www/ ever is.

mod common;

use common::*;

fn start_with_www() -> comet_chat::Running {
    let mut config = test_config();
    config.www = comet_chat::config::Www::Dir(www_dir());
    start(config)
}

#[test]
fn serves_the_page_with_content_types() {
    let server = start_with_www();
    let cases = [
        ("/", "text/html; charset=utf-8", "index.html"),
        ("/index.html", "text/html; charset=utf-8", "index.html"),
        ("/chat.js", "text/javascript; charset=utf-8", "chat.js"),
        // The client library a site embeds (docs/CLIENT.md) and the page imports.
        (
            "/comet-chat.js",
            "text/javascript; charset=utf-8",
            "comet-chat.js",
        ),
        ("/style.css", "text/css; charset=utf-8", "style.css"),
    ];
    for (path, content_type, file) in cases {
        let reply = request(server.addr, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("Content-Type"), Some(content_type), "{path}");
        let on_disk = std::fs::read(www_dir().join(file)).unwrap();
        assert_eq!(reply.body, on_disk, "{path}");
    }
}

#[test]
fn the_page_keeps_the_classic_element_ids() {
    let server = start_with_www();
    let page = request(server.addr, "GET / HTTP/1.1\r\n\r\n").text();
    for id in ["id=\"history\"", "id=\"message\"", "id=\"send\""] {
        assert!(page.contains(id), "{id}");
    }
}

#[test]
fn head_sends_the_length_without_the_body() {
    let server = start_with_www();
    let get = request(server.addr, "GET /chat.js HTTP/1.1\r\n\r\n");
    let mut client = Client::connect(server.addr);
    client.send(b"HEAD /chat.js HTTP/1.1\r\n\r\n");
    let head = client.read_reply_with(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), get.header("Content-Length"));
    // No body followed: the next response starts right away.
    client.get("/stats");
    assert_eq!(client.read_reply().status, 200);
}

#[test]
fn nothing_outside_www_is_served() {
    let server = start_with_www();
    let attempts = [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E%2FCargo.toml",
        "/www/../Cargo.toml",
        "//etc/passwd",
        "/etc/passwd",
        "/index.html%00",
        "/./index.html",
        "/.%2e/Cargo.toml",
        "/%5c..%5cCargo.toml",
        "/..\\Cargo.toml",
    ];
    for path in attempts {
        let reply = request(server.addr, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        assert!(
            reply.status == 404 || reply.status == 400,
            "{path} answered {}",
            reply.status
        );
        assert!(
            !reply.text().contains("[package]"),
            "{path} leaked Cargo.toml"
        );
    }
    // A raw NUL or a relative target never reaches the file table.
    for raw in [
        "GET /index.html\0 HTTP/1.1\r\n\r\n",
        "GET index.html HTTP/1.1\r\n\r\n",
    ] {
        let status = request(server.addr, raw).status;
        assert!(status == 404 || status == 400, "{raw:?} answered {status}");
    }
}

#[test]
fn static_files_refuse_other_methods() {
    let server = start_with_www();
    let reply = request(
        server.addr,
        "POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
}

/// File names with spaces, plus signs and non-ASCII letters are reachable by their
/// percent-encoded paths (as browsers send them), and decoding opens no way out of www/.
#[test]
fn percent_encoded_paths_reach_files_with_any_name_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("comet-www-names-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a b.txt"), "spaced").unwrap();
    std::fs::write(dir.join("café.txt"), "accented").unwrap();
    std::fs::write(dir.join("x+y.txt"), "plus").unwrap();
    std::fs::write(dir.join("index.html"), "<p>index</p>").unwrap();
    std::fs::write(dir.join("sub/index.html"), "<p>sub</p>").unwrap();
    let mut config = test_config();
    config.www = comet_chat::config::Www::Dir(dir.clone());
    let server = start(config);
    // Everything is in memory now.
    std::fs::remove_dir_all(&dir).unwrap();

    let found = [
        ("/a%20b.txt", "spaced"),
        ("/caf%C3%A9.txt", "accented"),
        ("/caf%c3%a9.txt", "accented"),
        ("/x+y.txt", "plus"),
        ("/x%2By.txt", "plus"),
        ("/sub/index.html", "<p>sub</p>"),
        ("/sub%2Findex.html", "<p>sub</p>"),
    ];
    for (path, body) in found {
        let reply = get(server.addr, path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.text(), body, "{path}");
    }
    let head = request(server.addr, "HEAD /a%20b.txt HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("6"));

    let refused = [
        ("/a+b.txt", 404), // `+` is a plus in a path, not a space
        ("/a%20b.txt%00", 404),
        ("/a%00b", 404),
        ("/%2e%2e/Cargo.toml", 404),
        ("/sub/%2e%2e/index.html", 404),
        ("/sub/%2E/index.html", 404),
        ("/sub/..%2Findex.html", 404),
        ("/sub%2F%2Findex.html", 404),
        ("/sub%5Cindex.html", 404),
        ("/caf%E9.txt", 404), // Latin-1, not UTF-8: names no file
        ("/%zz", 400),
        ("/a%2", 400),
        ("/100%", 400),
    ];
    for (path, status) in refused {
        let reply = get(server.addr, path);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
    }
}
