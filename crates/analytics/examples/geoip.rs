//! Run with `cargo run -p analytics --example geoip -- ADDRESS…`: the country the
//! installed GeoIP database gives each address (how the tests' addresses were chosen).

fn main() {
    let Some(path) = analytics::default_paths().into_iter().find(|p| p.is_file()) else {
        eprintln!("no GeoIP database: run scripts/setup.sh");
        std::process::exit(1);
    };
    let geo = match analytics::GeoIp::open(&path) {
        Ok(geo) => geo,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    for arg in std::env::args().skip(1) {
        match arg.parse() {
            Ok(ip) => println!("{arg} {}", geo.country(ip)),
            Err(_) => println!("{arg} not an address"),
        }
    }
}
