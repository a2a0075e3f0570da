use std::time::Duration;

use eraser_api::{Client, CreateJob, Error, JobId, RetryPolicy, Token};
use eraser_tests::emulator::{Hostile, Knobs, sample_jpeg};

use crate::util::{SERIAL, client, emulator, wait_done, write_input};

const PLANTED: &str = "tok-PLANTED-7f3a9c";

fn assert_hidden(what: &str, shown: &str) {
    assert!(!shown.contains(PLANTED), "{what} shows the token: {shown}");
}

fn assert_error_hides_token(err: &Error) {
    assert_hidden("Display", &err.to_string());
    assert_hidden("Debug", &format!("{err:?}"));
    assert_hidden("pretty Debug", &format!("{err:#?}"));
}

#[tokio::test]
async fn the_token_appears_in_no_error_and_no_debug() {
    let em = emulator(Knobs::default()).await;
    let token = Some(Token::new(PLANTED));
    let client = client(&em)
        .token(token.clone())
        .retry(RetryPolicy::none())
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_hidden("Client Debug", &format!("{client:?} {client:#?}"));
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "in.jpg", &sample_jpeg(60));
    let job = CreateJob {
        path: &path,
        file_name: None,
        expected_sha256: None,
    };
    let id = client.create_job(&job).await.unwrap();
    let mut errors = Vec::new();

    for knobs in [
        Knobs {
            refuse_code: Some(300002),
            ..Knobs::default()
        },
        Knobs {
            p_http_500: 1.0,
            ..Knobs::default()
        },
        Knobs {
            p_drop: 1.0,
            ..Knobs::default()
        },
        Knobs {
            hostile: Some(Hostile::HtmlErrorPage200),
            ..Knobs::default()
        },
    ] {
        em.set_knobs(knobs);
        errors.push(client.create_job(&job).await.unwrap_err());
    }
    for mode in [
        Hostile::HugeJson,
        Hostile::SlowDrip,
        Hostile::EmptyOutputUrl,
    ] {
        em.set_knobs(Knobs {
            hostile: Some(mode),
            ..Knobs::default()
        });
        errors.push(client.get_job(&id).await.unwrap_err());
    }
    errors.push(
        client
            .download("file:///etc/passwd", &dir.path().join("x.jpg"))
            .await
            .unwrap_err(),
    );
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = Client::builder()
        .base_url(format!("http://127.0.0.1:{closed_port}"))
        .product_serial(SERIAL)
        .token(token)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    errors.push(unreachable.get_job(&JobId::new("x")).await.unwrap_err());
    let bad_token = Client::builder()
        .product_serial(SERIAL)
        .token(Some(Token::new(format!("{PLANTED}\n"))))
        .build();
    errors.push(bad_token.unwrap_err());

    let kinds: Vec<String> = errors
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Api",
            "Http",
            "Transport",
            "Decode",
            "TooLarge",
            "Timeout",
            "Protocol",
            "UnsupportedUrl",
            "Transport",
            "Config"
        ]
    );
    errors.iter().for_each(assert_error_hides_token);
}

#[tokio::test]
async fn the_cdn_never_sees_the_api_headers() {
    let em = emulator(Knobs::default()).await;
    let client = client(&em)
        .token(Some(Token::new(PLANTED)))
        .header("X-Extra", "api-only")
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), "in.jpg", &sample_jpeg(61));
    let id = client
        .create_job(&CreateJob {
            path: &path,
            file_name: None,
            expected_sha256: None,
        })
        .await
        .unwrap();
    let done = wait_done(&client, &id).await;

    client
        .download(&done.output_urls[0], &dir.path().join("out.jpg"))
        .await
        .unwrap();

    let counters = em.counters();
    assert_eq!(counters.cdn_headers.len(), 1);
    for (name, value) in &counters.cdn_headers[0] {
        assert!(
            ![
                "authorization",
                "product-serial",
                "product-code",
                "origin",
                "x-extra"
            ]
            .contains(&name.as_str()),
            "the CDN saw {name}"
        );
        assert!(
            !value.contains(PLANTED) && value != SERIAL,
            "the CDN saw {name}: {value}"
        );
    }
}
