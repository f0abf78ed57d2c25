//! Both engines over the same data, rendered in-process (the integration
//! tests run the same through the binary against a real agent).

use std::collections::BTreeMap;

use super::*;
use crate::dependency::KvEntry;

fn store(kv: &[(&str, &str)]) -> Arc<DataStore> {
    let s = Arc::new(DataStore::default());
    let m: BTreeMap<String, KvEntry> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string().into()))
        .collect();
    s.put(&Dependency::KvPrefix(String::new()), Data::Kv(m));
    s
}

fn go(text: &str, flavor: Flavor, kv: &[(&str, &str)]) -> Result<String, String> {
    let mut r = Renderer::new(store(kv));
    let opts = TemplateOptions {
        engine: Some(Engine::Go),
        flavor,
        ..Default::default()
    };
    r.load_str("t.tmpl#1", "t.tmpl", text, &opts)
        .map_err(|e| e.to_string())?;
    match r.render("t.tmpl#1", "", &[String::new()]).0 {
        Outcome::Rendered(s) => Ok(s),
        Outcome::Failed(e) => Err(e),
        Outcome::Missing(m) => Err(format!("missing {m:?}")),
    }
}

fn ct(text: &str) -> String {
    go(
        text,
        Flavor::ConsulTemplate,
        &[("a/b", "1"), ("a/c", "two"), ("x", "")],
    )
    .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The Go language features, as Go's text/template renders them.
#[test]
fn go_language() {
    let cases = [
        ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
        ("{{if eq 1 2}}a{{else if eq 1 1}}b{{else}}c{{end}}", "b"),
        ("{{range $i, $v := split \",\" \"a,b,c\"}}{{$i}}={{$v}} {{end}}", "0=a 1=b 2=c "),
        ("{{range split \",\" \"\"}}x{{else}}empty{{end}}", "empty"),
        ("{{range loop 5}}{{if eq . 3}}{{break}}{{end}}{{if eq . 1}}{{continue}}{{end}}{{.}}{{end}}", "02"),
        ("{{with key \"a/c\"}}[{{.}}]{{end}}{{with key \"x\"}}no{{else}}empty{{end}}", "[two]empty"),
        ("{{define \"t\"}}<{{.}}>{{end}}{{template \"t\" \"v\"}}{{block \"b\" 1}}[{{.}}]{{end}}", "<v>[1]"),
        ("a  {{- /* c */ -}}  b", "ab"),
        ("{{printf \"%05.1f|%-4s|%q|%x|%v\" 3.14159 \"ab\" \"q\" 255 true}}", "003.1|ab  |\"q\"|ff|true"),
        ("{{range $k, $v := explodeMap (parseJSON `{\"b\":1,\"a\":2}`)}}{{$k}}{{$v}}{{end}}", "a2b1"),
        ("{{(parseJSON `{\"x\":{\"y\":\"z\"}}`).x.y}} {{.Missing}}", "z <no value>"),
        ("{{ key \"a/b\" | parseInt | add 1 }}", "2"),
        ("{{ 5 | subtract 2 }} {{ 10 | divide 4 }} {{ 10 | modulo 4 }} {{ 3 | minimum 7 }} {{ 2.5 | multiply 2 }}", "3 2 2 3 5"),
        ("{{ $t := parseJSON `[\"a\",\"b\"]` }}{{ if $t.Contains \"b\" }}yes{{end}}{{ if not ($t.ContainsAny (split \",\" \"x,y\")) }} none{{end}}", "yes none"),
        ("{{ scratch.Set \"k\" \"v\" }}{{ scratch.SetX \"k\" \"w\" }}{{ scratch.Get \"k\" }} {{ scratch.Key \"k\" }} {{ scratch.MapSet \"m\" \"b\" 2 }}{{ scratch.MapSet \"m\" \"a\" 1 }}{{ scratch.MapValues \"m\" }}", "v true [1 2]"),
        ("{{define \"inner\"}}in:{{.}}{{end}}{{ executeTemplate \"inner\" \"d\" | toUpper }}", "IN:D"),
        ("{{ range tree \"a\" }}{{.Key}}={{.Value}};{{end}}", "b=1;c=two;"),
        ("{{ join \",\" (split \"-\" \"x-y\") }} {{ \"a,b\" | split \",\" | join \"+\" }}", "x,y a+b"),
        ("{{ \"  x \" | trimSpace }}|{{ \"foo.conf\" | trimSuffix \".conf\" }}|{{ \"v1\" | trimPrefix \"v\" }}", "x|foo|1"),
        ("{{ indent 2 \"a\\nb\" }}|{{ \"hello world\" | toTitle }}", "  a\n  b|Hello World"),
        ("{{ toJSON (parseJSON `{\"a\":\"<&>\"}`) }}", "{\"a\":\"\\u003c\\u0026\\u003e\"}"),
    ];
    for (t, want) in cases {
        assert_eq!(ct(t), want, "{t}");
    }
}

/// confd's argument orders for confd resources; a missing key fails.
#[test]
fn confd_flavor_and_missing_key() {
    let kv = [("app/list", "a,b"), ("app/name", "n")];
    let r = go(
        "{{range split (getv \"/app/list\") \",\"}}[{{.}}]{{end}} {{join (split \"x,y\" \",\") \"|\"}} {{trimSuffix \"f.conf\" \".conf\"}} {{contains \"haystack\" \"st\"}}",
        Flavor::Confd,
        &kv,
    )
    .unwrap();
    assert_eq!(r, "[a][b] x|y f true");
    let e = go("a\nx={{getv \"/app/none\" | toUpper}}", Flavor::Confd, &kv).unwrap_err();
    assert!(
        e.starts_with("t.tmpl:2: getv: ") && e.contains("app/none"),
        "{e}"
    );
    let e = go("ok\n{{if}}x{{end}}", Flavor::Confd, &kv).unwrap_err();
    assert!(
        e.starts_with("t.tmpl:2:") && !e.contains("t.tmpl: t.tmpl"),
        "{e}"
    );
    // gotmpl alone accepts these; Go (and we) refuse them
    for (t, needle) in [
        ("ok\n{{if 1}}x", "unexpected EOF"),
        ("{{range split \"a\" \",\"}}x", "unexpected EOF"),
        ("{{define \"d\"}}x", "unexpected EOF"),
        ("{{with 1}}a{{else}}b", "unexpected EOF"),
        ("a\nb{{end}}\ndropped", "outside a block"),
        ("a{{if 1}}x{{end}}{{else}}dropped", "outside a block"),
    ] {
        let e = go(t, Flavor::Confd, &kv).unwrap_err();
        assert!(e.contains(needle), "{t:?}: {e}");
    }
    assert_eq!(
        go("a{{if 1}}b{{end}}c{{/* x */}}", Flavor::Confd, &kv).unwrap(),
        "abc"
    );
    assert_eq!(go("a {{- 1 -}}\n", Flavor::Confd, &kv).unwrap(), "a1");
    let e = go("{{nosuch 1}}", Flavor::Confd, &kv).unwrap_err();
    assert!(e.contains("t.tmpl:1") && e.contains("nosuch"), "{e}");
}

/// Hostile Go templates end in an error, not a crash: unbounded recursion
/// through `template` or `executeTemplate`, huge loops.
#[test]
fn go_recursion_and_loops_are_bounded() {
    let cases = [
        "{{define \"a\"}}x{{template \"a\" .}}{{end}}{{template \"a\" .}}",
        "{{define \"a\"}}{{executeTemplate \"a\"}}{{end}}{{executeTemplate \"a\"}}",
        "{{range loop 1000000000}}{{.}}{{end}}",
        "{{range $i := seq 1 100000}}{{range seq 1 100000}}{{end}}{{end}}",
    ];
    for t in cases {
        // run on a thread with the runtime's default worker stack (2 MiB)
        let t2 = t.to_string();
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || go(&t2, Flavor::ConsulTemplate, &[]))
            .unwrap()
            .join()
            .unwrap();
        assert!(r.is_err(), "{t}: {r:?}");
    }
}

/// consul-template's `@dc` on KV functions reads another datacenter's data
/// (its own dependency); confd's functions keep `@` as part of the key.
#[test]
fn kv_of_another_datacenter() {
    let s = store(&[("k", "local"), ("mail/u@dc2", "confd")]);
    s.put(
        &Dependency::KvKeyDc {
            key: "k".into(),
            dc: "dc2".into(),
        },
        Data::Key(Some("remote".into())),
    );
    let m: BTreeMap<String, KvEntry> = [("p/a", "1"), ("p/b/c", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string().into()))
        .collect();
    s.put(
        &Dependency::KvPrefixDc {
            prefix: "p/".into(),
            dc: "dc2".into(),
        },
        Data::Kv(m),
    );
    let render = |text: &str, flavor| {
        let mut r = Renderer::new(s.clone());
        let opts = TemplateOptions {
            engine: Some(Engine::Go),
            flavor,
            ..Default::default()
        };
        r.load_str("t#1", "t", text, &opts).unwrap();
        match r.render("t#1", "", &[String::new()]).0 {
            Outcome::Rendered(s) => s,
            other => panic!("{text}: {other:?}"),
        }
    };
    let ct = Flavor::ConsulTemplate;
    assert_eq!(
        render("{{key \"k\"}} {{key \"k@dc2\"}}", ct),
        "local remote"
    );
    assert_eq!(render("{{keyOrDefault \"k@dc2\" \"d\"}}", ct), "remote");
    assert_eq!(render("{{keyExists \"k@dc2\"}}", ct), "true");
    assert_eq!(
        render("{{range ls \"p@dc2\"}}{{.Key}}={{.Value}} {{end}}", ct),
        "a=1 "
    );
    assert_eq!(
        render("{{range tree \"p@dc2\"}}{{.Key}}={{.Value}} {{end}}", ct),
        "a=1 b/c=2 "
    );
    assert_eq!(render("{{getv \"/mail/u@dc2\"}}", Flavor::Confd), "confd");
}
