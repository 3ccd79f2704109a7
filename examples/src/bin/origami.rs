//! `origami`: crawl machines from outside, index them, search them.
//!
//! This first cut only has `demo`, which prints a sample frame; the CLI issue grows it.

use origami_frame::{Frame, Package};

fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    match cmd.as_str() {
        "demo" => {
            let mut f = Frame::new("sample-01");
            f.meta.hostname = Some("sample-01".into());
            f.os.name = Some("Debian GNU/Linux".into());
            f.os.version = Some("12".into());
            f.package.push(Package {
                name: "openssh-server".into(),
                version: "1:9.2p1-2+deb12u3".into(),
                arch: "amd64".into(),
                manager: "dpkg".into(),
                ..Default::default()
            });
            println!("{}", f.to_json_pretty());
        }
        "--version" | "-V" => println!("origami {}", origami_examples::VERSION),
        _ => {
            eprintln!("usage: origami demo");
            std::process::exit(2);
        }
    }
}
