"""validate warns when the inventory's api_image disagrees with the compose file's
literal image of the api service (the rollback re-tags the one compose runs)."""

from __future__ import annotations

from deployer.compose_images import image_problems


def _app(tmp_path, image_line: str) -> dict:
    app = tmp_path / "app"
    app.mkdir(parents=True)
    (app / "docker-compose.yml").write_text(
        f"services:\n  api:\n    build: .\n{image_line}  db:\n    image: postgres:15\n")
    return {"app_source": str(app), "api_service": "api",
            "compose_files": ["docker-compose.yml"]}


def test_a_stale_api_image_is_a_warning_at_the_compose_line(tmp_path) -> None:
    v = _app(tmp_path, "    image: shop-api:2\n")
    (p,) = image_problems({**v, "api_image": "shop-api:1"}, str(tmp_path), "vps")
    assert p.severity == "warning" and "'shop-api:1'" in p.message and "'shop-api:2'" in p.message
    assert p.position is not None and p.position.line == 4
    assert "leave api_image empty" in p.hint


def test_agreeing_unset_or_substituted_images_are_fine(tmp_path) -> None:
    v = _app(tmp_path, "    image: shop-api:2\n")
    assert image_problems({**v, "api_image": "shop-api:2"}, str(tmp_path), "vps") == []
    assert image_problems({**v, "api_image": ""}, str(tmp_path), "vps") == []
    sub = _app(tmp_path / "s", "    image: ${API_IMAGE}\n")
    assert image_problems({**sub, "api_image": "x:1"}, str(tmp_path), "vps") == []
    none = _app(tmp_path / "n", "")
    assert image_problems({**none, "api_image": "x:1"}, str(tmp_path), "vps") == []
