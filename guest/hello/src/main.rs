//! The smallest job: prints a greeting and then its arguments, one per line.

fn main() {
    println!("hello from canon");
    for arg in std::env::args().skip(1) {
        println!("{arg}");
    }
}
