#!/usr/bin/python3
"""The web page at / of a real modeldock-server with the demo models, in a real browser
(Debian's chromium, driven through chromium-driver by python3-selenium, headless): the model
list and its search, a model card, "ask the dock" with the demo query (the ranking shown must be
the one the REST API answers), registering a model until it is READY, and a phone-width layout.
Screenshots go to SCREENSHOT_DIR.

    PYTHONPATH=<build>/python http_browser_test.py SERVER ASSET_DIR CLI SCREENSHOT_DIR
"""
import json
import os
import sys
import tempfile
import unittest

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import modeldock
from http_test import DEMO, MODELS, QUERY, Http, http_port, multipart, query_parts
from live_server import start_server, stop_server

SERVER, ASSETS, SHOTS = sys.argv[1], sys.argv[2], sys.argv[4]
DEMO, QUERY = os.path.abspath(DEMO), os.path.abspath(QUERY)  # the browser needs full paths


class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.err = open(os.path.join(cls.tmp.name, "server.err"), "w+")
        cls.server, cls.address = start_server(
            SERVER, ASSETS, os.path.join(cls.tmp.name, "d"),
            ["--workers", "1", "--http-listen", "127.0.0.1:0"], stderr=cls.err)
        port = http_port(cls.err)
        cls.http = Http(port)
        cls.url = f"http://127.0.0.1:{port}/"
        for name in MODELS:
            status, _, body = cls.http.register(name)
            assert status == 200, body
            assert cls.http.events(name)[-1][1]["model"]["state"] == "READY"
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,800"):
            options.add_argument(arg)
        cls.browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        os.makedirs(SHOTS, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        stop_server(cls.server)
        cls.err.close()
        cls.tmp.cleanup()

    def wait(self, condition, timeout=120):
        return WebDriverWait(self.browser, timeout).until(lambda _: condition())

    def rows(self, table):
        """The cells' text, read at once (the page may redraw the table between two reads)."""
        return self.browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])]"
            ".map(r => [...r.cells].map(c => c.textContent))", f"#{table} tbody tr")

    def test_page(self):
        b = self.browser
        b.get(self.url)
        self.wait(lambda: len(self.rows("models")) == len(MODELS))
        self.assertEqual(sorted(r[0] for r in self.rows("models")), sorted(MODELS))
        self.assertIn(f"of {len(MODELS)}", b.find_element(By.ID, "models-summary").text)

        # Search, then the model card.
        b.find_element(By.ID, "search").send_keys("tops")
        b.find_element(By.CSS_SELECTOR, "#search-form button").click()
        self.wait(lambda: [r[0] for r in self.rows("models")] == ["fmnist-tops-cnn"])
        b.find_element(By.LINK_TEXT, "fmnist-tops-cnn").click()
        card = b.find_element(By.ID, "card")
        self.wait(lambda: card.is_displayed() and "fmnist-tops-cnn" in
                  b.find_element(By.ID, "card-title").text)
        facts = dict(zip([e.text for e in card.find_elements(By.TAG_NAME, "dt")],
                         [e.text for e in card.find_elements(By.TAG_NAME, "dd")]))
        with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as f:
            meta = json.load(f)
        self.assertEqual(facts["Labels"], ", ".join(meta["class_labels"]))
        model = self.http.call("GET", "/v1/models/fmnist-tops-cnn")[2]["model"]
        self.assertEqual(facts["State"], f"READY ({model['state_reason']})")
        self.assertEqual(facts["SHA-256"], model["sha256"])
        self.assertEqual(facts["Input shape"], " x ".join(map(str, meta["input_shape"])))
        self.wait(lambda: b.find_element(By.ID, "card-records-summary").text.startswith(
            "No outcomes reported yet"))
        self.assertEqual(self.rows("card-records"), [])
        # Its nearest models: the REST answer is the oracle; each links to its card.
        nearest = self.http.call("GET", "/v1/models/fmnist-tops-cnn/nearest?k=5")[2]["nearest"]
        self.assertEqual(len(nearest), len(MODELS) - 1)
        expected_nearest = [[n["model"]["name"], n["model"]["version"] or "-",
                             f"{n['similarity']:.4f}"] for n in nearest]
        self.wait(lambda: [r[:3] for r in self.rows("card-nearest")] == expected_nearest)
        b.save_screenshot(os.path.join(SHOTS, "page-card.png"))
        b.find_element(By.CSS_SELECTOR, "#card-nearest tbody a").click()
        self.wait(lambda: nearest[0]["model"]["name"] in b.find_element(By.ID, "card-title").text)
        b.execute_script("location.hash = '#model/fmnist-tops-cnn'")
        self.wait(lambda: "fmnist-tops-cnn" in b.find_element(By.ID, "card-title").text)

        # Ask the dock with the demo query; the REST API's answer is the oracle.
        status, _, expected = self.http.call("POST", "/v1/recommend",
                                             *reversed(query_parts({"top": 3, "metric": "fusion"})))
        self.assertEqual(status, 200, expected)
        b.find_element(By.ID, "dataset").send_keys(os.path.join(QUERY, "query-images-idx3-ubyte"))
        b.find_element(By.ID, "labels").send_keys(os.path.join(QUERY, "query-labels-idx1-ubyte"))
        top = b.find_element(By.ID, "top")
        top.clear()
        top.send_keys("3")
        b.find_element(By.ID, "ask").click()
        answer = b.find_element(By.ID, "answer")
        self.wait(lambda: answer.is_displayed())
        shown = self.rows("ranking")
        self.assertEqual([r[1] for r in shown], [r["name"] for r in expected["results"]])
        self.assertEqual(shown[0][1], "fmnist-tops-cnn")
        self.assertEqual(shown[0][3], f"{expected['results'][0]['score']:.4f}")
        self.assertIn(f"Mode {expected['mode']}", b.find_element(By.ID, "answer-mode").text)
        self.assertTrue(b.find_element(By.ID, "download").get_attribute("href").startswith("blob:"))
        # The chart: a stage-1 and a stage-2 bar per model, as long as the scores order them.
        widths = b.execute_script(
            "return ['bar-s1', 'bar-s2'].map(c => [...document.querySelectorAll('#chart .' + c)]"
            ".map(r => Number(r.getAttribute('width'))))")
        results = expected["results"]
        self.assertEqual([len(w) for w in widths], [len(results), len(results)])
        for bars, key in zip(widths, ("stage1_score", "stage2_score")):
            by_score = sorted(range(len(results)), key=lambda i: results[i][key])
            self.assertEqual(sorted(range(len(results)), key=lambda i: bars[i]), by_score, key)
            self.assertEqual(max(bars), 480)
        # Report an outcome from the first row.
        b.find_element(By.CSS_SELECTOR, "#ranking tbody tr button.report").click()
        WebDriverWait(b, 30).until(lambda _: b.switch_to.alert)
        prompt = b.switch_to.alert
        prompt.send_keys("0.875")
        prompt.accept()
        ask_status = b.find_element(By.ID, "ask-status")
        self.wait(lambda: ask_status.text.startswith("Reported"))
        first = expected["results"][0]
        self.assertEqual(ask_status.text, f"Reported {first['name']}@{first['version']}: 0.875; "
                         "the dock holds 1 outcome records.")
        with modeldock.Client(self.address) as dock:
            records = dock.records()
        self.assertEqual([(r["model"], r["accuracy"]) for r in records],
                         [(expected["results"][0]["name"], 0.875)])
        b.execute_script("document.getElementById('answer-mode').scrollIntoView()")
        b.save_screenshot(os.path.join(SHOTS, "page-ask.png"))
        # The model's card lists the outcome just reported (GET /v1/records as the oracle).
        stored = self.http.call("GET", f"/v1/records?model={first['name']}")[2]
        self.assertEqual(stored["total_records"], 1)
        record = stored["records"][0]
        b.execute_script("location.hash = ''")
        b.execute_script("location.hash = arguments[0]", "#model/" + first["name"])
        self.wait(lambda: self.rows("card-records") == [
            ["0.8750", "finetune", record["query_id"][:12], record["created"]]], 60)
        self.assertEqual(b.find_element(By.ID, "card-records-summary").text,
                         "1 outcome reported on 1 dataset.")
        b.execute_script("location.hash = ''")

        # Register a model from the page and watch it reach READY (server-sent events).
        b.find_element(By.ID, "metadata").send_keys(os.path.join(DEMO, "glyph-digits-cnn.json"))
        b.find_element(By.ID, "model-file").send_keys(os.path.join(DEMO, "glyph-digits-cnn.pt"))
        b.find_element(By.ID, "register").click()
        status_line = b.find_element(By.ID, "register-status")
        self.wait(lambda: status_line.text.startswith("glyph-digits-cnn: READY"))
        model = self.http.call("GET", "/v1/models/glyph-digits-cnn")[2]["model"]
        self.assertEqual(status_line.text, f"glyph-digits-cnn: READY ({model['state_reason']})")
        self.assertEqual(b.find_element(By.ID, "register-progress").get_attribute("value"), "1")

        # A phone's width: nothing wider than the screen.
        b.set_window_size(390, 844)
        b.get(self.url)
        self.wait(lambda: len(self.rows("models")) == len(MODELS) + 1)
        overflow = b.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        self.assertLessEqual(overflow, 0)
        b.save_screenshot(os.path.join(SHOTS, "page-phone.png"))

    def test_text_and_audio_queries_from_the_page(self):
        """The task selector: a CSV of texts sets it to text by itself; audio clips in an NPZ
        are asked with audio chosen. Each ranking shown is the REST API's with that task."""
        import numpy as np
        for stem in ("text/spanish-fortune-topics-gru", "audio/speech-commands-cnn"):
            status, _, body = self.http.register(stem)
            self.assertEqual(status, 200, body)
            name = os.path.basename(stem)
            self.assertEqual(self.http.events(name)[-1][1]["model"]["state"], "READY")
        # Two classes of seeded tones, 16 kHz mono int16 (as the REST test's).
        rng = np.random.default_rng(25)
        t = np.arange(16000) / 16000.0
        clips = [np.round((0.4 * np.sin(2 * np.pi * hz * rng.uniform(0.9, 1.1) * t)
                           + 0.05 * rng.standard_normal(t.size)) * 32767).astype(np.int16)
                 for hz in (440.0, 1760.0) for _ in range(6)]
        npz = os.path.join(self.tmp.name, "clips.npz")
        np.savez(npz, samples=np.stack(clips), labels=np.repeat(np.arange(2), 6))
        csv = os.path.join(DEMO, "query_text.csv")
        b = self.browser
        b.set_window_size(1280, 800)
        b.get(self.url)
        task = b.find_element(By.ID, "task")
        for path, chosen, expected_task in ((csv, None, "text"), (npz, "audio", "audio")):
            with self.subTest(path=os.path.basename(path)):
                with open(path, "rb") as f:
                    content = f.read()
                status, _, expected = self.http.call("POST", "/v1/recommend", *reversed(
                    multipart({"dataset": (os.path.basename(path), content),
                               "options": json.dumps({"top": 3, "task": expected_task}).encode()})))
                self.assertEqual(status, 200, expected)
                dataset = b.find_element(By.ID, "dataset")
                b.execute_script("arguments[0].value = ''", dataset)
                dataset.send_keys(path)
                if chosen is None:  # chosen by the page from the file
                    self.wait(lambda: task.get_attribute("value") == expected_task, 30)
                else:
                    self.wait(lambda: task.get_attribute("value") == "", 30)
                    b.execute_script("arguments[0].value = arguments[1]", task, chosen)
                top = b.find_element(By.ID, "top")
                top.clear()
                top.send_keys("3")
                b.execute_script("document.getElementById('answer').hidden = true")
                b.find_element(By.ID, "ask").click()
                answer = b.find_element(By.ID, "answer")
                self.wait(lambda: answer.is_displayed())
                shown = self.rows("ranking")
                self.assertEqual([r[1] for r in shown], [r["name"] for r in expected["results"]])
                self.assertEqual(shown[0][3], f"{expected['results'][0]['score']:.4f}")
                self.assertEqual(len(shown), expected["num_compatible"])
                self.assertEqual(len(shown), 1)  # only the model of that kind is compatible
        b.save_screenshot(os.path.join(SHOTS, "page-ask-audio.png"))


class BrowserAuthTest(unittest.TestCase):
    def test_a_consumer_key_cannot_register(self):
        """With --auth: the page without a key says the server needs one; with a consumer key
        it lists the models, and registering is refused with the role it needs."""
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "err"), "w+") as err:
            data = os.path.join(tmp, "d")
            server, _ = start_server(SERVER, ASSETS, data, ["--workers", "1", "--auth",
                                                            "--http-listen", "127.0.0.1:0"],
                                     stderr=err)
            browser = None
            try:
                port = http_port(err)
                with open(os.path.join(data, "admin.key")) as f:
                    admin = Http(port, f.read().strip())
                status, _, created = admin.call("POST", "/v1/keys", json.dumps(
                    {"role": "consumer", "name": "browser"}).encode(), "application/json")
                self.assertEqual(status, 200, created)
                options = webdriver.ChromeOptions()
                options.binary_location = "/usr/bin/chromium"
                for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,800"):
                    options.add_argument(arg)
                browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                                           options=options)
                browser.get(f"http://127.0.0.1:{port}/")
                summary = browser.find_element(By.ID, "models-summary")
                WebDriverWait(browser, 60).until(lambda _: "UNAUTHENTICATED" in summary.text)
                key = browser.find_element(By.ID, "api-key")
                key.send_keys(created["secret"])
                browser.find_element(By.ID, "search").click()  # leaving the field saves the key
                WebDriverWait(browser, 60).until(lambda _: summary.text == "No models match.")
                browser.find_element(By.ID, "metadata").send_keys(
                    os.path.join(DEMO, "fmnist-tops-cnn.json"))
                browser.find_element(By.ID, "model-file").send_keys(
                    os.path.join(DEMO, "fmnist-tops-cnn.pt"))
                browser.find_element(By.ID, "register").click()
                line = browser.find_element(By.ID, "register-status")
                WebDriverWait(browser, 60).until(lambda _: "PERMISSION_DENIED" in line.text)
                self.assertIn("needs the provider role", line.text)
                browser.save_screenshot(os.path.join(SHOTS, "page-consumer-register.png"))
                self.assertEqual(admin.call("GET", "/v1/models")[2]["total_size"], 0)
            finally:
                if browser is not None:
                    browser.quit()
                stop_server(server)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
