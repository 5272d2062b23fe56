fn main() {
    let t = std::time::Instant::now();
    let n = bobine::Builder::new().domains(1).run(|| {
        let hs: Vec<_> = (0..100_000u64).map(|i| bobine::thread::spawn(move || i)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    println!("sum {n} in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    bobine::Builder::new().domains(1).run(|| {
        let a = bobine::thread::spawn(|| for _ in 0..1_000_000 { bobine::thread::yield_now() });
        for _ in 0..1_000_000 { bobine::thread::yield_now() }
        a.join().unwrap();
    });
    println!("2M yields in {:?} = {:?}/yield", t.elapsed(), t.elapsed() / 2_000_000);
    let t = std::time::Instant::now();
    bobine::run(|| {
        let hs: Vec<_> = (0..1000).map(|_| bobine::thread::spawn(|| bobine::thread::sleep(std::time::Duration::from_millis(50)))).collect();
        for h in hs { h.join().unwrap(); }
    });
    println!("1000 sleepers in {:?}", t.elapsed());
    let r = bobine::run(|| bobine::thread::spawn(|| panic!("boom")).join());
    println!("panic join is_err: {}", r.is_err());
}
